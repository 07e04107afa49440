"""``Conv2D`` whose kernel gradient on jax is computed as matrix products.

XLA on CPU computes the gradient of a convolution with respect to its kernel
with a generic loop that is 20-25 times slower than the forward convolution
(a 3 x 3, 64 -> 64 convolution at 512 x 512: 0.25 s forward, 6 s for the
kernel gradient on a 2-core CPU), which made the instance decoder's training
step cost as much as 30 forward passes.  The same gradient written as one
matrix product per kernel tap (the input shifted by the tap, transposed,
times the output gradient) is several times faster.  The forward pass is the
very same ``ops.conv``; only the backward pass differs, and only in the order
of its sums.  A 1x1 kernel is multiplied instead (:mod:`.pointwise_conv`), forward
and backward.

Other backends (tensorflow, torch) use their own kernels, which are fine.
"""

from __future__ import annotations

import keras
from keras import ops

from .pointwise_conv import multiplies, pointwise_conv


class FilterGradConv2D(keras.layers.Conv2D):
    """A ``keras.layers.Conv2D`` (same weights, same forward pass) with a fast kernel
    gradient on jax for stride-1, undilated, ungrouped convolutions with odd kernels
    (``"same"`` padding) or any kernel (``"valid"`` padding)."""

    def convolution_op(self, inputs, kernel):
        if multiplies(self):  # 1x1: a matrix product (its gradients are products too)
            return pointwise_conv(inputs, kernel)
        if not self._fast_gradient():
            return super().convolution_op(inputs, kernel)
        return _conv_with_filter_grad(inputs, ops.convert_to_tensor(kernel), self.padding)

    def _fast_gradient(self) -> bool:
        if keras.backend.backend() != "jax" or self.data_format != "channels_last":
            return False
        kh, kw = self.kernel_size
        odd = kh % 2 == 1 and kw % 2 == 1
        return (
            tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and (self.padding == "valid" or odd)
        )


def _conv_with_filter_grad(inputs, kernel, padding: str):
    import jax
    import jax.numpy as jnp

    def forward(x, k):
        return ops.conv(x, k, strides=1, padding=padding, data_format="channels_last")

    @jax.custom_vjp
    def conv(x, k):
        return forward(x, k)

    def conv_fwd(x, k):
        return forward(x, k), (x, k)

    def conv_bwd(residual, grad):
        x, k = residual
        _, input_vjp = jax.vjp(lambda x_: forward(x_, k), x)
        (grad_x,) = input_vjp(grad)
        kh, kw, cin, cout = k.shape
        if padding == "same":
            x = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
        h, w = grad.shape[1], grad.shape[2]
        g = grad.reshape(-1, cout).astype(x.dtype)
        taps = [
            [x[:, i : i + h, j : j + w, :].reshape(-1, cin).T @ g for j in range(kw)]
            for i in range(kh)
        ]
        grad_k = jnp.stack([jnp.stack(row) for row in taps]).astype(k.dtype)
        return grad_x, grad_k

    conv.defvjp(conv_fwd, conv_bwd)
    return conv(inputs, kernel)
