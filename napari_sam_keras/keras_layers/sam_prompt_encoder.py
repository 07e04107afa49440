"""SAM's prompt encoder as the project's own Keras layers.

keras-cv 0.9's ``SAMPromptEncoder`` and ``RandomFrequencyPositionalEmbeddings``
(Apache License 2.0), operation for operation and with the same class and
attribute names, so weight files are interchangeable with keras-cv's (see
:mod:`.vit_det`).  The compiled prompt path
(:mod:`napari_sam_keras.keras_layers.prompt_decoder`) uses its parts directly;
``call`` serves the functional :class:`~.sam_model.SegmentAnythingModel`.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from .vit_det import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomFrequencyPositionalEmbeddings(keras.layers.Layer):
    """Positional encoding of 2D coordinates with random spatial frequencies."""

    def __init__(self, num_positional_features, scale, **kwargs):
        super().__init__(**kwargs)
        self.num_positional_features = num_positional_features
        self.scale = scale
        self.positional_encoding_gaussian_matrix = self.add_weight(
            name="positional_encoding_gaussian_matrix",
            shape=(2, self.num_positional_features),
            dtype=self.variable_dtype,
            trainable=False,
            initializer=keras.initializers.get("normal"),
        )

    def build(self, input_shape=None):
        self.built = True

    def _positional_encodings(self, coords):
        coords = coords * 2 - 1
        coords = coords @ ops.cast(self.positional_encoding_gaussian_matrix, self.compute_dtype)
        coords = coords * (2 * math.pi)
        return ops.concatenate([ops.sin(coords), ops.cos(coords)], axis=-1)

    def call(self, size):
        return self.encode_image(size)

    def encode_image(self, size):
        """The (H, W, C) positional encoding of every pixel centre of an (H, W) grid."""
        h, w = size
        grid = ops.ones(shape=(h, w), dtype=self.compute_dtype)
        y_embed = (ops.cumsum(grid, axis=0) - 0.5) / ops.cast(h, self.compute_dtype)
        x_embed = (ops.cumsum(grid, axis=1) - 0.5) / ops.cast(w, self.compute_dtype)
        return self._positional_encodings(ops.stack([x_embed, y_embed], axis=-1))

    def encode_coordinates(self, coords_input, image_size):
        """Encode (x, y) points in pixels of an image of ``image_size`` (H, W)."""
        coords_normalized = ops.stack(
            [coords_input[..., 0] / image_size[1], coords_input[..., 1] / image_size[0]],
            axis=-1,
        )
        return self._positional_encodings(coords_normalized)

    def get_config(self):
        return {
            **super().get_config(),
            "num_positional_features": self.num_positional_features,
            "scale": self.scale,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SAMPromptEncoder(keras.layers.Layer):
    """Points, boxes and masks -> sparse and dense prompt embeddings (keras-cv's layout)."""

    def __init__(
        self,
        *,
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
        activation="gelu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.mask_in_chans = mask_in_chans
        self.activation = activation
        self.positional_embedding_layer = RandomFrequencyPositionalEmbeddings(
            num_positional_features=self.embed_dim // 2, scale=1
        )
        self.foreground_point_embed = keras.layers.Embedding(
            1, embed_dim, name="foreground_point_embed"
        )
        self.background_point_embed = keras.layers.Embedding(
            1, embed_dim, name="background_point_embed"
        )
        self.top_left_corner_embed = keras.layers.Embedding(
            1, embed_dim, name="top_left_corner_embed"
        )
        self.bottom_right_corner_embed = keras.layers.Embedding(
            1, embed_dim, name="bottom_right_corner_embed"
        )
        self.not_a_point_embed = keras.layers.Embedding(1, embed_dim, name="not_a_point_embed")
        self.mask_downscaler = keras.models.Sequential(
            [
                keras.layers.Conv2D(mask_in_chans // 4, kernel_size=2, strides=2),
                keras.layers.LayerNormalization(epsilon=1e-6),
                keras.layers.Activation(activation),
                keras.layers.Conv2D(mask_in_chans, kernel_size=2, strides=2),
                keras.layers.LayerNormalization(epsilon=1e-6),
                keras.layers.Activation(activation),
                keras.layers.Conv2D(embed_dim, kernel_size=1),
            ],
            name="mask_downscaler",
        )
        self.no_mask_embed = keras.layers.Embedding(1, embed_dim, name="no_mask_embed")

    def build(self, input_shape=None):
        self.positional_embedding_layer.build()
        for layer in [
            self.foreground_point_embed,
            self.background_point_embed,
            self.top_left_corner_embed,
            self.bottom_right_corner_embed,
            self.not_a_point_embed,
            self.no_mask_embed,
        ]:
            layer.build([None])
        self.mask_downscaler.build(
            [None, 4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1], 1]
        )
        self.built = True

    def compute_output_shape(self, input_shape):
        grid = [None, self.image_embedding_size[0], self.image_embedding_size[1], self.embed_dim]
        return {
            "sparse_embeddings": [None, None, self.embed_dim],
            "dense_embeddings": grid,
            "dense_positional_embeddings": grid,
        }

    def _embed_points(self, points, labels):
        points = points + 0.5
        indices = ops.arange(1, dtype="int32")
        point_embeddings = self.positional_embedding_layer.encode_coordinates(
            points, self.input_image_size
        )
        labels = ops.broadcast_to(labels[..., None], ops.shape(point_embeddings))
        point_embeddings = ops.where(
            labels == 0,
            point_embeddings + self.background_point_embed(indices),
            point_embeddings + self.foreground_point_embed(indices),
        )
        return ops.where(labels == -1, self.not_a_point_embed(indices), point_embeddings)

    def _embed_box(self, box):
        shape = ops.shape(box)
        b, n = shape[0], shape[1]
        box = box + 0.5
        indices = ops.arange(1, dtype="int32")
        corners = self.positional_embedding_layer.encode_coordinates(box, self.input_image_size)
        top_left = corners[:, :, 0, :] + self.top_left_corner_embed(indices)
        bottom_right = corners[:, :, 1, :] + self.bottom_right_corner_embed(indices)
        corners = ops.stack([top_left, bottom_right], axis=2)
        return ops.reshape(corners, (b, n * 2, self.embed_dim))

    def _no_mask_dense(self, batch):
        return ops.broadcast_to(
            ops.reshape(
                self.no_mask_embed(ops.arange(1, dtype="int32")), (1, 1, 1, self.embed_dim)
            ),
            shape=(
                batch,
                self.image_embedding_size[0],
                self.image_embedding_size[1],
                self.embed_dim,
            ),
        )

    def call(self, inputs):
        batch = ops.shape(next(iter(inputs.values())))[0]
        points = inputs.get("points", ops.zeros((batch, 0, 2)))
        labels = inputs.get("labels", ops.zeros((batch, 0)))
        box = inputs.get("boxes", ops.zeros((batch, 0, 2, 2)))
        mask = inputs.get("masks", ops.zeros((batch, 0, 256, 256, 1)))
        sparse_embeddings = ops.concatenate(
            [self._embed_points(points, labels), self._embed_box(box)], axis=1
        )

        def mask_embed():
            if mask.shape[1] == 0:  # both branches are traced with concrete shapes
                return self._no_mask_dense(batch)
            shape = ops.shape(mask)
            return self.mask_downscaler(
                ops.reshape(mask, (shape[0] * shape[1], shape[2], shape[3], shape[4]))
            )

        dense_embeddings = ops.cond(
            ops.equal(ops.size(mask), 0), lambda: self._no_mask_dense(batch), mask_embed
        )
        dense_pe = self.positional_embedding_layer.encode_image(self.image_embedding_size)
        return {
            "sparse_embeddings": sparse_embeddings,
            "dense_embeddings": dense_embeddings,
            "dense_positional_embeddings": dense_pe[None, ...],
        }

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "image_embedding_size": self.image_embedding_size,
            "input_image_size": self.input_image_size,
            "mask_in_chans": self.mask_in_chans,
            "activation": self.activation,
        }
