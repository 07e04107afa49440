"""SAM's ViT image encoder (ViTDet) as the project's own Keras layers.

The classes follow keras-cv 0.9's ``ViTDetBackbone`` and its layers (Apache
License 2.0) operation for operation and keep their class and attribute names,
so

* a network built here computes the same numbers as keras-cv's;
* ``save_weights`` writes, and ``load_weights`` reads, the same ``.weights.h5``
  layout as keras-cv (Keras names a weight by the attribute path and the class
  names of its layers): the shipped demo model, keras-cv presets and the
  converted-checkpoint cache load unchanged;
* the official tensor names of :mod:`napari_sam_keras.model.checkpoint_conversion`
  map onto the same attributes.

Unlike keras-cv they need neither TensorFlow nor keras-cv itself, which saves
most of the start-up time on the jax and torch backends.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

PACKAGE = "napari_sam_keras"

#: ImageNet mean and std in [0, 1] units, applied inside the backbone (as keras-cv does).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_ids(model: keras.Model) -> set[int]:
    return {id(layer) for layer in model._flatten_layers()}


class FunctionalWithoutDuplicates(keras.Model):
    """A functional model whose attributes pointing at its own layers are not saved twice.

    keras-cv's ``Backbone`` and ``Task`` hide those attributes from ``dir()``
    (so weight files list each layer once, under ``layers/``); so does this.
    """

    _hidden_attributes: tuple[str, ...] = ()

    def __dir__(self):
        layer_ids = getattr(self, "_functional_layer_ids", None)
        if layer_ids is None:
            return super().__dir__()

        def keep(attr: str) -> bool:
            if attr in self._hidden_attributes:
                return False
            try:
                return id(getattr(self, attr)) not in layer_ids
            except Exception:
                return True

        return list(filter(keep, super().__dir__()))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MLP(keras.layers.Layer):
    """``input -> [hidden_dim] * (num_layers - 1) -> output_dim`` dense layers."""

    def __init__(self, hidden_dim, output_dim, num_layers, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.num_layers = num_layers
        self.activation = activation
        dense_net = []
        for width in [hidden_dim] * (num_layers - 1):
            dense_net.append(keras.layers.Dense(width))
            dense_net.append(keras.layers.Activation(activation))
        dense_net.append(keras.layers.Dense(output_dim))
        self.dense_net = keras.models.Sequential(dense_net)

    def build(self, input_shape):
        self.dense_net.build(input_shape)
        self.built = True

    def call(self, x):
        return self.dense_net(x)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "output_dim": self.output_dim,
            "num_layers": self.num_layers,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class AddRelativePositionalEmbedding(keras.layers.Layer):
    """The decomposed relative-position tables of one attention (``rel_pos_h``, ``rel_pos_w``)."""

    def __init__(self, input_size, key_dim, **kwargs):
        super().__init__(**kwargs)
        self.input_size = input_size
        self.key_dim = key_dim
        self.rel_pos_h = self.add_weight(
            name="rel_pos_h",
            shape=(2 * self.input_size[0] - 1, self.key_dim),
            initializer="zeros",
            trainable=True,
        )
        self.rel_pos_w = self.add_weight(
            name="rel_pos_w",
            shape=(2 * self.input_size[1] - 1, self.key_dim),
            initializer="zeros",
            trainable=True,
        )
        self.built = True

    def _get_rel_pos(self, query_size, key_size, rel_pos):
        """The table rows for every (query, key) offset (keras-cv's, including its one quirk:
        a table that has to be resized is returned without the gather)."""
        max_rel_dist = 2 * max(query_size, key_size) - 1
        if ops.shape(rel_pos)[0] != max_rel_dist:
            resized = ops.image.resize(
                image=ops.reshape(rel_pos, (1, ops.shape(rel_pos)[0], ops.shape(rel_pos)[1], 1)),
                size=(max_rel_dist, ops.shape(rel_pos)[1]),
                interpolation="bilinear",
            )
            return ops.squeeze(resized, axis=(0, -1))
        query_coordinates = ops.cast(ops.arange(query_size), dtype=self.compute_dtype)[:, None] * (
            max(key_size / query_size, 1.0)
        )
        key_coordinates = ops.cast(ops.arange(key_size), dtype=self.compute_dtype)[None, :] * (
            max(query_size / key_size, 1.0)
        )
        relative_coordinates = (query_coordinates - key_coordinates) + (key_size - 1) * max(
            query_size / key_size, 1.0
        )
        relative_coordinates = ops.cast(relative_coordinates, dtype="int32")
        return ops.take(rel_pos, relative_coordinates, 0)

    def call(self, attention_map, queries, query_size, key_size):
        query_height, query_width = query_size[0], query_size[1]
        key_height, key_width = key_size[0], key_size[1]
        rel_heights = self._get_rel_pos(query_height, key_height, self.rel_pos_h)
        rel_widths = self._get_rel_pos(query_width, key_width, self.rel_pos_w)
        shape = ops.shape(queries)
        b, c = shape[0], shape[2]
        rel_queries = ops.reshape(queries, (b, query_height, query_width, c))
        rel_heights = ops.einsum("bhwc,hkc->bhwk", rel_queries, rel_heights)
        rel_widths = ops.einsum("bhwc,wkc->bhwk", rel_queries, rel_widths)
        attention_map = ops.reshape(
            attention_map, (b, query_height, query_width, key_height, key_width)
        )
        attention_map = attention_map + rel_heights[..., :, None]
        attention_map = attention_map + rel_widths[..., None, :]
        return ops.reshape(attention_map, (b, query_height * query_width, key_height * key_width))

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size, "key_dim": self.key_dim}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiHeadAttentionWithRelativePE(keras.layers.Layer):
    """Multi-head self-attention over a (B, H, W, C) map with decomposed relative positions."""

    def __init__(
        self, num_heads, key_dim, use_bias=True, use_rel_pos=False, input_size=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = self.key_dim**-0.5
        self.use_bias = use_bias
        self.input_size = input_size
        self.use_rel_pos = use_rel_pos
        self.qkv = keras.layers.Dense(key_dim * self.num_heads * 3, use_bias=self.use_bias)
        self.projection = keras.layers.Dense(key_dim * self.num_heads)
        if self.use_rel_pos:
            if input_size is None:
                raise ValueError("Input size must be provided if using relative positions.")
            # (sic: keras-cv's attribute name, which names the weights in files)
            self.add_decomposed_reative_pe = AddRelativePositionalEmbedding(
                self.input_size, self.key_dim
            )

    def build(self, input_shape=None):
        self.qkv.build([self.key_dim * self.num_heads])
        self.projection.build([self.key_dim * self.num_heads])
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        shape = ops.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        qkv = ops.transpose(
            ops.reshape(self.qkv(x), (b, h * w, 3, self.num_heads, self.key_dim)),
            axes=(2, 0, 3, 1, 4),
        )
        qkv = ops.reshape(qkv, (3, b * self.num_heads, h * w, self.key_dim))
        queries, keys, values = ops.unstack(qkv, axis=0)
        attention_map = (queries * self.scale) @ ops.transpose(keys, axes=(0, 2, 1))
        if self.use_rel_pos:
            attention_map = self.add_decomposed_reative_pe(
                attention_map, queries=queries, query_size=(h, w), key_size=(h, w)
            )
        attention_map = ops.softmax(attention_map, axis=-1)
        x = ops.reshape(attention_map @ values, (b, self.num_heads, h, w, self.key_dim))
        x = ops.reshape(ops.transpose(x, axes=(0, 2, 3, 1, 4)), (b, h, w, c))
        return self.projection(x)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "use_bias": self.use_bias,
            "use_rel_pos": self.use_rel_pos,
            "input_size": self.input_size,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowPartitioning(keras.layers.Layer):
    """Splits a (B, H, W, C) map into zero-padded windows and puts them back."""

    def __init__(self, window_size, **kwargs):
        super().__init__(**kwargs)
        self.window_size = window_size
        self.built = True

    def partition(self, x):
        shape = ops.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        size = self.window_size
        pad_height = (size - h % size) % size
        pad_width = (size - w % size) % size
        if pad_height > 0 or pad_width > 0:
            x = ops.pad(x, ((0, 0), (0, pad_height), (0, pad_width), (0, 0)))
        h_padded, w_padded = h + pad_height, w + pad_width
        x = ops.reshape(x, (b, h_padded // size, size, w_padded // size, size, c))
        windows = ops.reshape(ops.transpose(x, axes=(0, 1, 3, 2, 4, 5)), (-1, size, size, c))
        return windows, (h_padded, w_padded)

    def unpartition(self, windows, HW_padded, HW):
        h_padded, w_padded = HW_padded
        h, w = HW
        size = self.window_size
        b = ops.shape(windows)[0] // ((h_padded // size) * (w_padded // size))
        x = ops.reshape(windows, (b, h_padded // size, w_padded // size, size, size, -1))
        x = ops.reshape(ops.transpose(x, axes=(0, 1, 3, 2, 4, 5)), (b, h_padded, w_padded, -1))
        return x[:, :h, :w, :]

    def get_config(self):
        return {**super().get_config(), "window_size": self.window_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WindowedTransformerEncoder(keras.layers.Layer):
    """One ViT block: (windowed or global) attention and an MLP, each with a residual."""

    def __init__(
        self,
        project_dim,
        mlp_dim,
        num_heads,
        use_bias=True,
        use_rel_pos=False,
        window_size=0,
        input_size=None,
        activation="gelu",
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.project_dim = project_dim
        self.mlp_dim = mlp_dim
        self.num_heads = num_heads
        self.use_bias = use_bias
        self.input_size = input_size
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.window_size = window_size
        self.use_rel_pos = use_rel_pos
        self.layer_norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon)
        self.layer_norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon)
        self.attention = MultiHeadAttentionWithRelativePE(
            num_heads=self.num_heads,
            key_dim=self.project_dim // self.num_heads,
            use_bias=use_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.mlp_block = MLP(mlp_dim, project_dim, num_layers=2, activation="gelu")
        self.window_partitioning = WindowPartitioning(window_size)

    def build(self, input_shape=None):
        self.layer_norm1.build([None, None, None, self.project_dim])
        self.layer_norm2.build([None, None, None, self.project_dim])
        self.attention.build()
        self.mlp_block.build([None, None, None, self.project_dim])
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        shortcut = x
        x = self.layer_norm1(x)
        if self.window_size > 0:
            h, w = ops.shape(x)[1], ops.shape(x)[2]
            x, hw_padded = self.window_partitioning.partition(x)
        x = self.attention(x)
        if self.window_size > 0:
            x = self.window_partitioning.unpartition(x, HW_padded=hw_padded, HW=(h, w))
        x = shortcut + x
        return x + self.mlp_block(self.layer_norm2(x))

    def get_config(self):
        return {
            **super().get_config(),
            "project_dim": self.project_dim,
            "mlp_dim": self.mlp_dim,
            "num_heads": self.num_heads,
            "use_bias": self.use_bias,
            "use_rel_pos": self.use_rel_pos,
            "window_size": self.window_size,
            "input_size": self.input_size,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ViTDetPatchingAndEmbedding(keras.layers.Layer):
    """Patches to embeddings: one strided convolution."""

    def __init__(self, kernel_size=(16, 16), strides=(16, 16), embed_dim=768, **kwargs):
        super().__init__(**kwargs)
        self.projection = keras.layers.Conv2D(embed_dim, kernel_size=kernel_size, strides=strides)
        self.kernel_size = kernel_size
        self.strides = strides
        self.embed_dim = embed_dim

    def build(self, input_shape):
        self.projection.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.projection.compute_output_shape(input_shape)

    def call(self, x):
        return self.projection(x)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "embed_dim": self.embed_dim,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class AddPositionalEmbedding(keras.layers.Layer):
    """Adds the learned absolute position embedding (``pos_embed``)."""

    def __init__(self, img_size, patch_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        grid = img_size // patch_size
        self.pos_embed = self.add_weight(
            name="pos_embed", shape=(1, grid, grid, embed_dim), initializer="zeros", trainable=True
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, x):
        return x + self.pos_embed

    def get_config(self):
        return {
            **super().get_config(),
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ViTDetBackbone(FunctionalWithoutDuplicates):
    """SAM's ViT image encoder: (B, S, S, 3) images in 0..255 -> (B, S/p, S/p, out_chans).

    keras-cv's ``ViTDetBackbone`` with ``include_rescaling=True`` (the only way
    this project builds it), with the same constructor arguments and config.
    """

    def __init__(
        self,
        *,
        include_rescaling=True,
        input_shape=(1024, 1024, 3),
        input_tensor=None,
        patch_size=16,
        embed_dim=768,
        depth=12,
        mlp_dim=768 * 4,
        num_heads=12,
        out_chans=256,
        use_bias=True,
        use_abs_pos=True,
        use_rel_pos=True,
        window_size=14,
        global_attention_indices=(2, 5, 8, 11),
        layer_norm_epsilon=1e-6,
        **kwargs: Any,
    ):
        if input_tensor is not None:
            raise ValueError("ViTDetBackbone takes an input_shape, not an input_tensor.")
        images = keras.Input(shape=tuple(input_shape), name="images")
        size = images.shape[-3]
        if size is None or size != images.shape[-2]:
            raise ValueError("The input must be square with a known size, e.g. (1024, 1024, 3).")
        x = images
        if include_rescaling:
            x = keras.layers.Rescaling(1.0 / 255.0)(x)
        x = (x - ops.array(IMAGENET_MEAN, dtype=x.dtype)) / ops.array(IMAGENET_STD, dtype=x.dtype)
        x = ViTDetPatchingAndEmbedding(
            kernel_size=(patch_size, patch_size),
            strides=(patch_size, patch_size),
            embed_dim=embed_dim,
        )(x)
        if use_abs_pos:
            x = AddPositionalEmbedding(size, patch_size, embed_dim)(x)
        for i in range(depth):
            x = WindowedTransformerEncoder(
                project_dim=embed_dim,
                mlp_dim=mlp_dim,
                num_heads=num_heads,
                use_bias=use_bias,
                use_rel_pos=use_rel_pos,
                window_size=window_size if i not in global_attention_indices else 0,
                input_size=(size // patch_size, size // patch_size),
            )(x)
        x = keras.models.Sequential(
            [
                keras.layers.Conv2D(filters=out_chans, kernel_size=1, use_bias=False),
                keras.layers.LayerNormalization(epsilon=1e-6),
                keras.layers.Conv2D(
                    filters=out_chans, kernel_size=3, padding="same", use_bias=False
                ),
                keras.layers.LayerNormalization(epsilon=1e-6),
            ]
        )(x)
        super().__init__(inputs=images, outputs=x, **kwargs)
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.mlp_dim = mlp_dim
        self.num_heads = num_heads
        self.out_chans = out_chans
        self.use_bias = use_bias
        self.use_rel_pos = use_rel_pos
        self.use_abs_pos = use_abs_pos
        self.window_size = window_size
        self.global_attention_indices = list(global_attention_indices)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.input_tensor = None
        self.include_rescaling = include_rescaling
        self._functional_layer_ids = _layer_ids(self)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_shape": self.input_shape[1:],
            "input_tensor": None,
            "include_rescaling": self.include_rescaling,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "mlp_dim": self.mlp_dim,
            "num_heads": self.num_heads,
            "out_chans": self.out_chans,
            "use_bias": self.use_bias,
            "use_abs_pos": self.use_abs_pos,
            "use_rel_pos": self.use_rel_pos,
            "window_size": self.window_size,
            "global_attention_indices": self.global_attention_indices,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
