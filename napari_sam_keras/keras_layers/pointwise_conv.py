"""1x1 convolutions as matrix products on XLA (jax, tensorflow).

A 1x1, stride-1 convolution is one matrix product per pixel.  XLA's CPU convolution runs
it at half that speed on large maps (64 -> 256 channels at 256 x 256: 45 ms against 22 ms
as ``x @ W`` on a 2-core Xeon), so the networks' 1x1 convolutions (TinyViT's MBConv
blocks, the instance decoder's upsamplers and output) multiply instead.  The sums are
the same, in another order.  torch keeps its own convolution.
"""

from __future__ import annotations

import keras
from keras import ops


def multiplies(conv: keras.layers.Conv2D) -> bool:
    """Whether ``conv`` is a 1x1, stride-1, undilated, ungrouped, channels-last
    convolution on a backend where :func:`pointwise_conv` is faster."""
    return (
        keras.backend.backend() != "torch"
        and tuple(conv.kernel_size) == (1, 1)
        and tuple(conv.strides) == (1, 1)
        and tuple(conv.dilation_rate) == (1, 1)
        and conv.groups == 1
        and conv.data_format == "channels_last"
    )


def pointwise_conv(x, kernel):
    """``x`` (..., C_in) times a (1, 1, C_in, C_out) convolution kernel."""
    return ops.matmul(x, ops.cast(kernel[0, 0], x.dtype))
