"""set_image converts and resizes large images without full-size float copies, exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from napari_sam_keras.processing import images


def reference_rgb_uint8(image, contrast_limits=None):
    """The plain full-size conversion (float64 over the whole RGB image)."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.dtype == np.uint8 and contrast_limits is None:
        return image
    low, high = (
        (float(image.min()), float(image.max())) if contrast_limits is None else contrast_limits
    )
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.round((image.astype(np.float64) - low) * scale), 0, 255).astype(np.uint8)


def reference_resized(image, long_side, contrast_limits=None):
    """As the official predictor: full-size RGB uint8, then one PIL bilinear resize."""
    rgb = reference_rgb_uint8(image, contrast_limits)
    h, w = images.preprocess_shape(rgb.shape[0], rgb.shape[1], long_side)
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


@pytest.mark.parametrize(
    "shape", [(301, 700), (701, 299), (64, 64), (1025, 7), (50, 40, 3), (333, 123, 4), (9, 9, 1)]
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, bool])
@pytest.mark.parametrize("limits", [None, (100.0, 3000.0)])
def test_strip_wise_preprocessing_is_exact(monkeypatch, shape, dtype, limits):
    monkeypatch.setattr(images, "STRIP_PIXELS", 997)  # many strips, ragged last one
    rng = np.random.default_rng(sum(shape))
    image = (rng.random(shape) * (1.2 if dtype is bool else 4000)).astype(dtype)
    if dtype is np.uint8:
        image = (rng.random(shape) * 255).astype(np.uint8)
    for side in (256, 1024):
        expected = reference_resized(image, side, limits)
        np.testing.assert_array_equal(images.resized_rgb_uint8(image, side, limits), expected)
    expected_rgb = reference_rgb_uint8(image, limits)
    if expected_rgb.ndim == 2:
        expected_rgb = np.repeat(expected_rgb[..., None], 3, axis=-1)
    np.testing.assert_array_equal(images.to_rgb_uint8(image, limits), expected_rgb[..., :3])


def test_set_image_peak_memory_on_a_large_uint16_image():
    """Measured in a fresh process: numpy's allocations are traced by tracemalloc."""
    code = textwrap.dedent(
        """
        import json, tracemalloc
        import numpy as np
        from napari_sam_keras import SAMConfig, SAMPredictor, build_sam

        config = SAMConfig(
            image_size=256, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
            encoder_global_attn_indexes=(1,), prompt_embed_dim=32, decoder_mlp_dim=64,
            iou_head_hidden_dim=32,
        )
        predictor = SAMPredictor(build_sam(config, seed=0), warm_up=False)
        predictor.set_image(np.arange(64 * 48, dtype=np.uint16).reshape(64, 48))  # compile
        h, w = 6000, 4000
        image = np.empty((h, w), np.uint16)  # 48 MB, filled without a large temporary
        for top in range(0, h, 500):
            image[top : top + 500] = np.arange(w, dtype=np.uint16)[None] * 7 + top
        tracemalloc.start()
        predictor.set_image(image)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(json.dumps({"peak": peak, "nbytes": image.nbytes,
                          "input_size": predictor.input_size}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["input_size"] == [256, 171]
    # the old conversion peaked at over 12x the uint16 input (three float64 channels);
    # now it is one uint8 plane (half the input) plus small strips
    assert report["peak"] < report["nbytes"], report
