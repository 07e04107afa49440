"""What makes the instance decoder's training step affordable on a CPU (issue 20's benchmark):
the kernel gradient as matrix products on jax, and training on windows of the embedding."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.runtime.backend import import_keras
from napari_sam_keras.training.finetune import DECODER_WINDOW, _decoder_window


@pytest.mark.parametrize(
    "kernel, padding, shape",
    [(3, "same", (2, 9, 7, 4)), (1, "valid", (2, 9, 7, 4)), (3, "valid", (1, 8, 8, 3))],
)
def test_filter_grad_conv_has_keras_conv_forward_and_gradients(kernel, padding, shape):
    keras = import_keras()
    from napari_sam_keras.keras_layers.conv_filter_grad import FilterGradConv2D

    ours = FilterGradConv2D(6, kernel, padding=padding)
    plain = keras.layers.Conv2D(6, kernel, padding=padding)
    ours.build(shape)
    plain.build(shape)
    rng = np.random.default_rng(0)
    ours.set_weights([rng.normal(size=w.shape).astype("float32") for w in ours.get_weights()])
    plain.set_weights(ours.get_weights())
    x = rng.normal(size=shape).astype("float32")
    got, want = keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(plain(x))
    if kernel == 1 and keras.backend.backend() != "torch":
        # a 1x1 kernel is a matrix product on XLA (keras_layers/pointwise_conv.py): the
        # same sums in another order
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    else:  # the very same convolution
        np.testing.assert_array_equal(got, want)
    if keras.backend.backend() != "jax":
        return
    import jax

    weight = rng.normal(size=tuple(ours.compute_output_shape(shape))).astype("float32")

    def loss(variables, layer):
        y, _ = layer.stateless_call(variables, [], x)
        return (y * weight).sum()

    variables = [v.value for v in ours.trainable_variables]
    fast = jax.grad(loss)(variables, ours)
    reference = jax.grad(loss)(variables, plain)
    for a, b in zip(fast, reference, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


def test_decoder_windows_lie_on_the_image_and_move():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        # a 1024 x 768 model-frame image: 64 x 48 cells hold pixels
        rows, cols = _decoder_window((64, 64), (1024, 768), 16, rng)
        assert rows.stop - rows.start == cols.stop - cols.start == DECODER_WINDOW
        assert 0 <= rows.start and rows.stop <= 64
        assert 0 <= cols.start and cols.stop <= 48
        starts.add((rows.start, cols.start))
    assert len(starts) > 10


def test_a_small_embedding_trains_whole():
    rows, cols = _decoder_window((16, 16), (256, 200), 16, np.random.default_rng(0))
    assert (rows, cols) == (slice(0, 16), slice(0, 16))
