"""MobileSAM's TinyViT image encoder as Keras 3 layers (channels-last throughout).

The layers follow MobileSAM's ``tiny_vit_sam.py`` operation for operation, so a
converted MobileSAM checkpoint gives the same embeddings:

* every convolution is a bias-free conv followed by BatchNorm (eps 1e-5), with
  PyTorch's symmetric padding (Keras' ``"same"`` pads stride-2 convs on one side
  only, so the padding is explicit);
* GELU is the exact (erf) one, LayerNorm eps 1e-5, the neck's LayerNorm2d 1e-6;
* attention windows are zero-padded and the pad tokens are not masked (they pass
  the attention's own LayerNorm like any token);
* the per-head relative-position bias is a learned table indexed by the
  (|dy|, |dx|) offset of two tokens in a window; the index is fixed by the window
  size and computed here with numpy, it is not a weight;
* the patch merging into the last stage keeps the resolution (stride 1), so the
  map ends at ``image_size / 16`` like SAM's ViT.

The encoder takes the same input as our ViT path: a (B, S, S, 3) batch in 0..255
units, resized and padded with the pixel mean (see
:func:`napari_sam_keras.image_preprocessing.model_input`); it normalises inside,
which turns the mean padding into the official zero padding.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from .activations import gelu
from .pointwise_conv import multiplies, pointwise_conv

PACKAGE = "napari_sam_keras"

BATCH_NORM_EPS = 1e-5
LAYER_NORM_EPS = 1e-5
LAYER_NORM_2D_EPS = 1e-6


def depthwise_conv_taps(x, kernel, strides: int = 1):
    """A depthwise convolution of an already padded map as a sum of shifted, scaled slices.

    ``kernel`` is Keras' (k, k, C, 1) depthwise kernel, the convolution "valid" at
    ``strides``.  XLA compiles this into one fused loop; its own grouped convolution
    on CPU runs 5-10x slower than PyTorch's depthwise kernel on the same map.
    """
    k = int(kernel.shape[0])
    h = (int(x.shape[1]) - k) // strides + 1
    w = (int(x.shape[2]) - k) // strides + 1
    out = None
    for dy in range(k):
        for dx in range(k):
            tap = x[
                :,
                dy : dy + strides * (h - 1) + 1 : strides,
                dx : dx + strides * (w - 1) + 1 : strides,
                :,
            ]
            term = tap * kernel[dy, dx, :, 0]
            out = term if out is None else out + term
    return out


def relative_position_index(window: int) -> np.ndarray:
    """(T, T) index into a window's bias table, T = window**2 tokens in row-major order.

    MobileSAM numbers the (|dy|, |dx|) offsets in the order it first meets them
    walking token pairs from the window's first token; that token meets every
    offset in row-major order, so the number is ``|dy| * window + |dx|``.
    """
    y, x = np.divmod(np.arange(window * window), window)
    return (np.abs(y[:, None] - y[None, :]) * window + np.abs(x[:, None] - x[None, :])).astype(
        np.int32
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2dBN(keras.layers.Layer):
    """Bias-free convolution (depthwise when ``depthwise``) + BatchNorm, torch padding.

    The BatchNorm always uses its stored statistics (inference mode), as MobileSAM in eval().
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 1,
        strides: int = 1,
        padding: int = 0,
        depthwise: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = int(padding)
        self.depthwise = bool(depthwise)
        self.pad = (
            keras.layers.ZeroPadding2D(self.padding, dtype=self.dtype_policy) if padding else None
        )
        if self.depthwise:
            self.conv = keras.layers.DepthwiseConv2D(
                self.kernel_size, self.strides, use_bias=False, dtype=self.dtype_policy, name="c"
            )
        else:
            self.conv = keras.layers.Conv2D(
                self.filters,
                self.kernel_size,
                self.strides,
                use_bias=False,
                dtype=self.dtype_policy,
                name="c",
            )
        self.bn = keras.layers.BatchNormalization(
            epsilon=BATCH_NORM_EPS, dtype=self.dtype_policy, name="bn"
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.pad is not None:
            self.pad.build(shape)
            shape = self.pad.compute_output_shape(shape)
        self.conv.build(shape)
        self.bn.build(self.conv.compute_output_shape(shape))

    def call(self, x, training=False):
        if self.pad is not None:
            x = self.pad(x)
        if self.depthwise and keras.backend.backend() != "torch":
            # XLA (jax, tensorflow): the shifted-slice form; torch keeps its native kernel
            y = depthwise_conv_taps(x, ops.cast(self.conv.kernel, x.dtype), self.strides)
        elif not self.depthwise and multiplies(self.conv):
            y = pointwise_conv(x, self.conv.kernel)
        else:
            y = self.conv(x)
        return self.bn(y, training=False)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self.pad is not None:
            shape = self.pad.compute_output_shape(shape)
        return self.conv.compute_output_shape(shape)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "depthwise": self.depthwise,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MBConv(keras.layers.Layer):
    """Inverted residual: 1x1 expand, depthwise 3x3, 1x1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float = 4.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.expand_ratio = float(expand_ratio)
        hidden = int(dim * expand_ratio)
        policy = self.dtype_policy
        self.conv1 = Conv2dBN(hidden, 1, dtype=policy, name="conv1")
        self.conv2 = Conv2dBN(hidden, 3, 1, 1, depthwise=True, dtype=policy, name="conv2")
        self.conv3 = Conv2dBN(self.dim, 1, dtype=policy, name="conv3")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv in (self.conv1, self.conv2, self.conv3):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)

    def call(self, x):
        y = gelu(self.conv1(x))
        y = gelu(self.conv2(y))
        return gelu(self.conv3(y) + x)

    def get_config(self) -> dict:
        return {**super().get_config(), "dim": self.dim, "expand_ratio": self.expand_ratio}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchMerging(keras.layers.Layer):
    """1x1 conv to ``out_dim``, GELU, depthwise 3x3 at ``strides``, GELU, 1x1 conv."""

    def __init__(self, out_dim: int, strides: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_dim = int(out_dim)
        self.strides = int(strides)
        policy = self.dtype_policy
        self.conv1 = Conv2dBN(out_dim, 1, dtype=policy, name="conv1")
        self.conv2 = Conv2dBN(out_dim, 3, strides, 1, depthwise=True, dtype=policy, name="conv2")
        self.conv3 = Conv2dBN(out_dim, 1, dtype=policy, name="conv3")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv in (self.conv1, self.conv2, self.conv3):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)

    def call(self, x):
        x = gelu(self.conv1(x))
        x = gelu(self.conv2(x))
        return self.conv3(x)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in (self.conv1, self.conv2, self.conv3):
            shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self) -> dict:
        return {**super().get_config(), "out_dim": self.out_dim, "strides": self.strides}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowAttention(keras.layers.Layer):
    """LayerNorm + multi-head self-attention within ``window`` x ``window`` windows.

    Input and output are (B, H, W, C) maps; the map is zero-padded to whole
    windows, attended window by window and cropped back.  Per head, the qkv
    projection's output holds [q, k, v] side by side (MobileSAM's layout).
    """

    def __init__(self, dim: int, num_heads: int, window: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.window = int(window)
        self.head_dim = self.dim // self.num_heads
        self.scale = self.head_dim**-0.5
        policy = self.dtype_policy
        self.norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPS, dtype=policy, name="norm"
        )
        self.qkv = keras.layers.Dense(3 * self.dim, dtype=policy, name="qkv")
        self.proj = keras.layers.Dense(self.dim, dtype=policy, name="proj")
        self._bias_index = relative_position_index(self.window).reshape(-1)

    def build(self, input_shape):
        self.norm.build((None, None, self.dim))
        self.qkv.build((None, None, self.dim))
        self.proj.build((None, None, self.dim))
        self.attention_biases = self.add_weight(
            name="attention_biases",
            shape=(self.num_heads, self.window * self.window),
            initializer="zeros",
        )

    def call(self, x):
        _, h, w, c = x.shape
        win, heads, hd = self.window, self.num_heads, self.head_dim
        pad_b, pad_r = -h % win, -w % win
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // win, pw // win
        tokens = win * win
        # LayerNorm and qkv act token by token, so they run on the map before the padding:
        # MobileSAM's zero pad tokens all become qkv(norm(0)) = qkv(beta), one vector that
        # fills the padding afterwards (the padded share of the map is 8-20%).
        qkv = self.qkv(self.norm(x))
        if pad_b or pad_r:
            pad_token = self.qkv(self.norm(ops.zeros((1, 1, c), x.dtype)))
            inside = np.zeros((1, ph, pw, 1), bool)
            inside[:, :h, :w] = True
            qkv = ops.pad(qkv, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
            qkv = ops.where(inside, qkv, ops.reshape(pad_token, (1, 1, 1, 3 * c)))
        # window partition and head split in one transpose: (3, windows, heads, tokens, hd)
        qkv = ops.reshape(qkv, (-1, nh, win, nw, win, heads, 3, hd))
        qkv = ops.reshape(ops.transpose(qkv, (6, 0, 1, 3, 5, 2, 4, 7)), (3, -1, heads, tokens, hd))
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = ops.take(ops.cast(self.attention_biases, q.dtype), self._bias_index, axis=1)
        logits = ops.matmul(q, ops.swapaxes(k, -1, -2)) * ops.cast(self.scale, q.dtype)
        logits = logits + ops.reshape(bias, (1, heads, tokens, tokens))
        out = ops.matmul(ops.softmax(logits, axis=-1), v)  # (windows, heads, tokens, hd)
        # window reverse and head merge in one transpose, then drop the padding and project
        # (the projection is per token too, so the pad tokens skip it)
        out = ops.reshape(out, (-1, nh, nw, heads, win, win, hd))
        out = ops.reshape(ops.transpose(out, (0, 1, 4, 2, 5, 3, 6)), (-1, ph, pw, c))
        if pad_b or pad_r:
            out = out[:, :h, :w, :]
        return self.proj(out)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "window": self.window,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TinyViTBlock(keras.layers.Layer):
    """Window attention + residual, depthwise local conv, pre-norm MLP + residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        mlp_ratio: float = 4.0,
        local_conv_size: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.num_heads = int(num_heads)
        self.window = int(window)
        self.mlp_ratio = float(mlp_ratio)
        self.local_conv_size = int(local_conv_size)
        policy = self.dtype_policy
        self.attn = WindowAttention(dim, num_heads, window, dtype=policy, name="attn")
        self.local_conv = Conv2dBN(
            dim,
            local_conv_size,
            1,
            local_conv_size // 2,
            depthwise=True,
            dtype=policy,
            name="local_conv",
        )
        self.mlp_norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPS, dtype=policy, name="mlp_norm"
        )
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(self.dim, dtype=policy, name="fc2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.attn.build(shape)
        self.local_conv.build(shape)
        self.mlp_norm.build(shape)
        self.fc1.build(shape)
        self.fc2.build((*shape[:-1], int(self.dim * self.mlp_ratio)))

    def call(self, x):
        x = x + self.attn(x)
        x = self.local_conv(x)
        return x + self.fc2(gelu(self.fc1(self.mlp_norm(x))))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "window": self.window,
            "mlp_ratio": self.mlp_ratio,
            "local_conv_size": self.local_conv_size,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TinyViTEncoder(keras.layers.Layer):
    """MobileSAM's image encoder: (B, S, S, 3) in 0..255 -> (B, S/16, S/16, out_dim).

    Stages: a conv stem to S/4, stage 0 of MBConv blocks, then three stages of
    :class:`TinyViTBlock`, with a :class:`PatchMerging` before stages 1-3 (stride
    2, 2 and 1), then SAM's neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d).
    """

    def __init__(
        self,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_dim: int = 256,
        pixel_mean=(123.675, 116.28, 103.53),
        pixel_std=(58.395, 57.12, 57.375),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.embed_dims = tuple(int(d) for d in embed_dims)
        self.depths = tuple(int(d) for d in depths)
        self.num_heads = tuple(int(h) for h in num_heads)
        self.window_sizes = tuple(int(w) for w in window_sizes)
        self.mlp_ratio = float(mlp_ratio)
        self.mbconv_expand_ratio = float(mbconv_expand_ratio)
        self.local_conv_size = int(local_conv_size)
        self.out_dim = int(out_dim)
        self.pixel_mean = tuple(float(m) for m in pixel_mean)
        self.pixel_std = tuple(float(s) for s in pixel_std)
        policy = self.dtype_policy
        dims = self.embed_dims
        self.stem = [
            Conv2dBN(dims[0] // 2, 3, 2, 1, dtype=policy, name="stem_0"),
            Conv2dBN(dims[0], 3, 2, 1, dtype=policy, name="stem_1"),
        ]
        # merges[i - 1] leads into stage i (strides 2, 2, then 1 into the last stage)
        self.merges = [
            PatchMerging(dims[i], 1 if i == len(dims) - 1 else 2, dtype=policy, name=f"merge_{i}")
            for i in range(1, len(dims))
        ]
        self.blocks = [
            MBConv(dims[0], self.mbconv_expand_ratio, dtype=policy, name=f"s0_b{j}")
            for j in range(self.depths[0])
        ]
        for i in range(1, len(dims)):
            self.blocks += [
                TinyViTBlock(
                    dims[i],
                    self.num_heads[i],
                    self.window_sizes[i],
                    self.mlp_ratio,
                    self.local_conv_size,
                    dtype=policy,
                    name=f"s{i}_b{j}",
                )
                for j in range(self.depths[i])
            ]
        self.neck_conv1 = keras.layers.Conv2D(
            self.out_dim, 1, use_bias=False, dtype=policy, name="neck_conv1"
        )
        self.neck_norm1 = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_2D_EPS, dtype=policy, name="neck_norm1"
        )
        self.neck_pad = keras.layers.ZeroPadding2D(1, dtype=policy)
        self.neck_conv2 = keras.layers.Conv2D(
            self.out_dim, 3, use_bias=False, dtype=policy, name="neck_conv2"
        )
        self.neck_norm2 = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_2D_EPS, dtype=policy, name="neck_norm2"
        )

    def _stages(self) -> list[tuple[Any, list[Any]]]:
        """(patch merging into the stage or None, the stage's blocks) per stage."""
        stages, start = [], 0
        for i, depth in enumerate(self.depths):
            merge = self.merges[i - 1] if i else None
            stages.append((merge, self.blocks[start : start + depth]))
            start += depth
        return stages

    def build(self, input_shape):
        b, h, w, c = tuple(input_shape)
        shape = (b, h, w, c)
        for conv in self.stem:
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
        for merge, blocks in self._stages():
            if merge is not None:
                merge.build(shape)
                shape = merge.compute_output_shape(shape)
            for block in blocks:
                block.build(shape)
        out = (*shape[:-1], self.out_dim)
        self.neck_conv1.build(shape)
        self.neck_norm1.build(out)
        self.neck_pad.build(out)
        self.neck_conv2.build(self.neck_pad.compute_output_shape(out))
        self.neck_norm2.build(out)

    def call(self, images):
        mean = ops.convert_to_tensor(np.asarray(self.pixel_mean, np.float32), images.dtype)
        std = ops.convert_to_tensor(np.asarray(self.pixel_std, np.float32), images.dtype)
        x = (images - mean) / std  # the mean padding becomes the official zero padding
        x = gelu(self.stem[0](x))
        x = self.stem[1](x)
        for merge, blocks in self._stages():
            if merge is not None:
                x = merge(x)
            for block in blocks:
                x = block(x)
        x = self.neck_norm1(self.neck_conv1(x))
        return self.neck_norm2(self.neck_conv2(self.neck_pad(x)))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = tuple(input_shape)
        return (b, None if h is None else h // 16, None if w is None else w // 16, self.out_dim)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "embed_dims": self.embed_dims,
            "depths": self.depths,
            "num_heads": self.num_heads,
            "window_sizes": self.window_sizes,
            "mlp_ratio": self.mlp_ratio,
            "mbconv_expand_ratio": self.mbconv_expand_ratio,
            "local_conv_size": self.local_conv_size,
            "out_dim": self.out_dim,
            "pixel_mean": self.pixel_mean,
            "pixel_std": self.pixel_std,
        }


def tiny_vit_backbone(config: Any) -> keras.Model:
    """A functional Keras model around a :class:`TinyViTEncoder` built from a ``SAMConfig``.

    Being functional (it has ``input`` and ``output``), it takes the place of the
    ViT backbone inside keras-cv's ``SegmentAnythingModel``.
    """
    size = config.image_size
    images = keras.Input((size, size, 3), name="images")
    encoder = TinyViTEncoder(
        embed_dims=config.tiny_vit_embed_dims,
        depths=config.tiny_vit_depths,
        num_heads=config.tiny_vit_num_heads,
        window_sizes=config.tiny_vit_window_sizes,
        mlp_ratio=config.tiny_vit_mlp_ratio,
        mbconv_expand_ratio=config.tiny_vit_mbconv_expand_ratio,
        local_conv_size=config.tiny_vit_local_conv_size,
        out_dim=config.prompt_embed_dim,
        pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std,
        name="tiny_vit",
    )
    return keras.Model(images, encoder(images), name="tiny_vit_backbone")


def find_tiny_vit(backbone: Any) -> TinyViTEncoder | None:
    """The :class:`TinyViTEncoder` of a backbone made by :func:`tiny_vit_backbone`, else None."""
    found = [
        layer for layer in getattr(backbone, "layers", []) if isinstance(layer, TinyViTEncoder)
    ]
    return found[0] if len(found) == 1 else None
