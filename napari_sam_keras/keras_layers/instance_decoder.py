"""The instance-segmentation decoder of micro-sam ("AIS") as Keras layers.

This is torch-em's UNETR decoder path as micro-sam's ``DecoderAdapter`` runs
it on a stored SAM image embedding, channels last:

* ``deconv1..4``: four 2x upsamplings of the embedding (512, 256, 128, 64
  channels), each [upsampler, 3x3 conv, BatchNorm, ReLU];
* ``base``: a conv block on the embedding (InstanceNorm without affine
  parameters before each of two 3x3 convs);
* three decoder stages [upsampler, concatenate with a centre crop of
  ``deconv1..3``'s output, conv block].  torch-em's ``Decoder._crop`` crops
  every dimension after the batch one, channels included, so a stage sees
  only the middle channels of its skip features (e.g. 128..383 of 512);
* ``deconv_out`` (upsampler), concatenation with ``deconv4``'s output,
  ``decoder_head`` (conv block), ``out_conv`` (1x1) and a sigmoid.

An upsampler is either bilinear 2x (``align_corners=False``) followed by a
1x1 conv, or a 2x2 transposed conv with stride 2, depending on the
checkpoint.  Import this module only after the Keras backend is chosen
(:func:`napari_sam_keras.backend.import_keras`).
"""

from __future__ import annotations

import keras
from keras import ops

from .conv_filter_grad import FilterGradConv2D

#: torch's InstanceNorm2d and BatchNorm2d epsilon.
TORCH_NORM_EPSILON = 1e-5


class InstanceNormalization(keras.layers.Layer):
    """torch ``InstanceNorm2d(affine=False)``: each sample's channels to zero mean, unit variance.

    Statistics over the spatial axes of channels-last input, biased variance,
    computed in float32.
    """

    def __init__(self, epsilon: float = TORCH_NORM_EPSILON, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        x32 = ops.cast(x, "float32")
        mean = ops.mean(x32, axis=(1, 2), keepdims=True)
        centred = x32 - mean
        var = ops.mean(ops.square(centred), axis=(1, 2), keepdims=True)
        return ops.cast(centred * ops.rsqrt(var + self.epsilon), x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


def _upsample_rows(x):
    """2x bilinear along axis 1, torch's ``align_corners=False`` with edge clamping."""
    before = ops.concatenate([x[:, :1], x[:, :-1]], axis=1)
    after = ops.concatenate([x[:, 1:], x[:, -1:]], axis=1)
    even = 0.25 * before + 0.75 * x
    odd = 0.75 * x + 0.25 * after
    shape = ops.shape(x)
    return ops.reshape(ops.stack([even, odd], axis=2), (shape[0], 2 * shape[1], *shape[2:]))


def _upsample_cols(x):
    """2x bilinear along axis 2, as :func:`_upsample_rows`."""
    before = ops.concatenate([x[:, :, :1], x[:, :, :-1]], axis=2)
    after = ops.concatenate([x[:, :, 1:], x[:, :, -1:]], axis=2)
    even = 0.25 * before + 0.75 * x
    odd = 0.75 * x + 0.25 * after
    shape = ops.shape(x)
    return ops.reshape(ops.stack([even, odd], axis=3), (shape[0], shape[1], 2 * shape[2], shape[3]))


class BilinearUpsample2x(keras.layers.Layer):
    """torch ``interpolate(scale_factor=2, mode="bilinear", align_corners=False)``, channels last.

    Written with slices and weighted sums (weights 1/4 and 3/4), so every
    backend computes the same thing; Keras' resize differs between backends
    at the borders.
    """

    def call(self, x):
        return _upsample_cols(_upsample_rows(x))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)


class Upsampler(keras.layers.Layer):
    """torch-em's 2x upsampler: bilinear + 1x1 conv, or a 2x2 stride-2 transposed conv.

    ``conv`` holds the weights in both cases (torch names ``conv`` and
    ``block`` respectively).
    """

    def __init__(self, filters: int, conv_transpose: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.conv_transpose = conv_transpose
        if conv_transpose:
            self.resize = None
            self.conv = keras.layers.Conv2DTranspose(
                filters, 2, strides=2, padding="valid", name="block"
            )
        else:
            self.resize = BilinearUpsample2x(name="resize")
            self.conv = FilterGradConv2D(filters, 1, name="conv")

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.resize is not None:
            self.resize.build(self.conv.compute_output_shape(input_shape))

    def call(self, x):
        if self.resize is None:
            return self.conv(x)
        # The 1x1 conv and the bilinear upsampling commute (one acts across channels, the
        # other across pixels with weights that sum to 1, so the bias passes through), so
        # the conv runs on the small map: a quarter of torch-em's multiply-adds.
        return self.resize(self.conv(x))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else 2 * h, None if w is None else 2 * w, self.filters)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "conv_transpose": self.conv_transpose,
        }


class ConvBlock(keras.layers.Layer):
    """torch-em ``ConvBlock2d``: twice [InstanceNorm (no affine), 3x3 conv, ReLU]."""

    def __init__(self, filters: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.norm1 = InstanceNormalization(name="norm1")
        self.conv1 = FilterGradConv2D(filters, 3, padding="same", name="conv1")
        self.norm2 = InstanceNormalization(name="norm2")
        self.conv2 = FilterGradConv2D(filters, 3, padding="same", name="conv2")

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build((*input_shape[:3], self.filters))

    def call(self, x):
        x = ops.relu(self.conv1(self.norm1(x)))
        return ops.relu(self.conv2(self.norm2(x)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.filters)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters}


class DeconvBlock(keras.layers.Layer):
    """torch-em ``Deconv2DBlock``: upsampler, 3x3 conv, BatchNorm (inference), ReLU."""

    def __init__(self, filters: int, conv_transpose: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.conv_transpose = conv_transpose
        self.upsampler = Upsampler(filters, conv_transpose, name="upsampler")
        self.conv = FilterGradConv2D(filters, 3, padding="same", name="conv")
        self.norm = keras.layers.BatchNormalization(epsilon=TORCH_NORM_EPSILON, name="norm")

    def build(self, input_shape):
        self.upsampler.build(input_shape)
        shape = self.upsampler.compute_output_shape(input_shape)
        self.conv.build(shape)
        self.norm.build(shape)

    def call(self, x, training=False):
        x = self.conv(self.upsampler(x))
        return ops.relu(self.norm(x, training=False))

    def compute_output_shape(self, input_shape):
        return self.upsampler.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "filters": self.filters,
            "conv_transpose": self.conv_transpose,
        }


def centre_crop_like(skip, reference):
    """torch-em's ``Decoder._crop``: centre-crop ``skip`` to ``reference``'s shape.

    Every axis after the batch axis is cropped, channels included (static
    shapes; spatial axes of equal or unknown size are left alone).
    """
    slices = [slice(None)]
    for have, want in zip(skip.shape[1:], reference.shape[1:], strict=True):
        if have is None or want is None or have == want:
            slices.append(slice(None))
        else:
            start = (have - want) // 2
            slices.append(slice(start, start + want))
    return skip[tuple(slices)]


class UNETRInstanceDecoder(keras.Model):
    """Image embedding (B, h, w, embed_dim) -> (B, 16 h, 16 w, out_channels) maps in [0, 1].

    Args:
        embed_dim: channels of the image embedding (256 for SAM).
        features: channels of the four decoder levels, coarse to fine
            (torch-em: 512, 256, 128, 64).
        out_channels: output maps (3: foreground, centre and boundary distances).
        conv_transpose: upsample with 2x2 transposed convs instead of bilinear + 1x1 conv.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        features: tuple[int, int, int, int] = (512, 256, 128, 64),
        out_channels: int = 3,
        conv_transpose: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.features = tuple(int(f) for f in features)
        self.out_channels = int(out_channels)
        self.conv_transpose = bool(conv_transpose)
        f = self.features
        self.deconvs = [
            DeconvBlock(f[i], self.conv_transpose, name=f"deconv{i + 1}") for i in range(4)
        ]
        self.base = ConvBlock(f[0], name="base")
        self.samplers = [
            Upsampler(f[i + 1], self.conv_transpose, name=f"sampler{i}") for i in range(3)
        ]
        self.blocks = [ConvBlock(f[i + 1], name=f"block{i}") for i in range(3)]
        self.deconv_out = Upsampler(f[3], self.conv_transpose, name="deconv_out")
        self.decoder_head = ConvBlock(f[3], name="decoder_head")
        self.out_conv = FilterGradConv2D(self.out_channels, 1, name="out_conv")

    def build(self, input_shape):
        f = self.features
        shape = tuple(input_shape)
        skips = []
        for deconv in self.deconvs:
            deconv.build(shape)
            shape = deconv.compute_output_shape(shape)
            skips.append(shape)
        self.base.build(tuple(input_shape))
        shape = self.base.compute_output_shape(tuple(input_shape))
        for i, (sampler, block) in enumerate(zip(self.samplers, self.blocks, strict=True)):
            sampler.build(shape)
            shape = sampler.compute_output_shape(shape)
            block.build((*shape[:3], 2 * f[i + 1]))
            shape = block.compute_output_shape(shape)
        self.deconv_out.build(shape)
        shape = self.deconv_out.compute_output_shape(shape)
        self.decoder_head.build((*shape[:3], 2 * f[3]))
        self.out_conv.build((*shape[:3], f[3]))
        self.built = True

    def call(self, embedding, training=False):
        z = embedding
        skips = []
        for deconv in self.deconvs:
            z = deconv(z)
            skips.append(z)
        x = self.base(embedding)
        for sampler, block, skip in zip(self.samplers, self.blocks, skips[:3], strict=True):
            x = sampler(x)
            x = block(ops.concatenate([x, centre_crop_like(skip, x)], axis=-1))
        x = self.deconv_out(x)
        x = self.decoder_head(ops.concatenate([x, skips[3]], axis=-1))
        return ops.sigmoid(self.out_conv(x))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        scale = 16
        return (
            b,
            None if h is None else scale * h,
            None if w is None else scale * w,
            self.out_channels,
        )

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "features": list(self.features),
            "out_channels": self.out_channels,
            "conv_transpose": self.conv_transpose,
        }
