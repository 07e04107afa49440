"""SAM's mask decoder (two-way transformer, upscaling, hypernetworks) as the project's own layers.

keras-cv 0.9's ``SAMMaskDecoder``, ``TwoWayTransformer``,
``TwoWayMultiHeadAttention`` and ``MultiHeadAttentionWithDownsampling``
(Apache License 2.0), operation for operation and with the same class and
attribute names, so weight files are interchangeable with keras-cv's (see
:mod:`.vit_det`).  The compiled prompt path
(:mod:`napari_sam_keras.keras_layers.prompt_decoder`) uses its parts directly;
``call`` serves the functional :class:`~.sam_model.SegmentAnythingModel`.
"""

from __future__ import annotations

import keras
from keras import ops

from .vit_det import MLP, PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiHeadAttentionWithDownsampling(keras.layers.Layer):
    """Multi-head attention whose projections may shrink the features (``downsample_rate``)."""

    def __init__(self, num_heads, key_dim, downsample_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.downsample_rate = downsample_rate
        self.internal_dims = key_dim // downsample_rate
        self.query_proj = keras.layers.Dense(self.internal_dims * self.num_heads)
        self.key_proj = keras.layers.Dense(self.internal_dims * self.num_heads)
        self.value_proj = keras.layers.Dense(self.internal_dims * self.num_heads)
        self.out_proj = keras.layers.Dense(self.key_dim * self.num_heads)

    def build(self, input_shape=None):
        self.query_proj.build([None, None, self.num_heads * self.key_dim])
        self.key_proj.build([None, None, self.num_heads * self.key_dim])
        self.value_proj.build([None, None, self.num_heads * self.key_dim])
        self.out_proj.build([None, None, self.internal_dims * self.num_heads])
        self.built = True

    def _separate_heads(self, x):
        shape = ops.shape(x)
        b, n, c = shape[0], shape[1], shape[2]
        return ops.transpose(
            ops.reshape(x, (b, n, self.num_heads, c // self.num_heads)), (0, 2, 1, 3)
        )

    def _recombine_heads(self, x):
        shape = ops.shape(x)
        b, heads, tokens, per_head = shape[0], shape[1], shape[2], shape[3]
        return ops.reshape(ops.transpose(x, axes=(0, 2, 1, 3)), (b, tokens, heads * per_head))

    def call(self, query, value, key):
        query = self._separate_heads(self.query_proj(query))
        key = self._separate_heads(self.key_proj(key))
        value = self._separate_heads(self.value_proj(value))
        per_head = ops.shape(query)[-1]
        out = query @ ops.transpose(key, (0, 1, 3, 2))
        out = out / ops.sqrt(ops.cast(per_head, dtype=self.compute_dtype))
        out = ops.softmax(out, axis=-1)
        return self.out_proj(self._recombine_heads(out @ value))

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "downsample_rate": self.downsample_rate,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TwoWayMultiHeadAttention(keras.layers.Layer):
    """One two-way layer: token self-attention, token->image, MLP, image->token."""

    def __init__(
        self,
        num_heads,
        key_dim,
        mlp_dim,
        skip_first_layer_pe,
        attention_downsample_rate=2,
        activation="relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.mlp_dim = mlp_dim
        self.skip_first_layer_pe = skip_first_layer_pe
        self.attention_downsample_rate = attention_downsample_rate
        self.activation = activation
        self.self_attention = MultiHeadAttentionWithDownsampling(
            num_heads=num_heads, key_dim=key_dim
        )
        self.layer_norm1 = keras.layers.LayerNormalization(epsilon=1e-5)
        self.cross_attention_token_to_image = MultiHeadAttentionWithDownsampling(
            num_heads=num_heads, key_dim=key_dim, downsample_rate=attention_downsample_rate
        )
        self.layer_norm2 = keras.layers.LayerNormalization(epsilon=1e-5)
        self.mlp_block = MLP(mlp_dim, key_dim * num_heads, num_layers=2, activation=activation)
        self.layer_norm3 = keras.layers.LayerNormalization(epsilon=1e-5)
        self.cross_attention_image_to_token = MultiHeadAttentionWithDownsampling(
            num_heads=num_heads, key_dim=key_dim, downsample_rate=attention_downsample_rate
        )
        self.layer_norm4 = keras.layers.LayerNormalization(epsilon=1e-5)

    def build(self, input_shape=None):
        width = self.num_heads * self.key_dim
        self.self_attention.build()
        self.layer_norm1.build([None, None, width])
        self.cross_attention_token_to_image.build()
        self.layer_norm2.build([None, None, width])
        self.mlp_block.build([None, None, width])
        self.layer_norm3.build([None, None, width])
        self.cross_attention_image_to_token.build()
        self.layer_norm4.build([None, None, width])
        self.built = True

    def call(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attention(query=queries, value=queries, key=queries)
        else:
            queries_with_pe = queries + query_pe
            queries = queries + self.self_attention(
                query=queries_with_pe, key=queries_with_pe, value=queries
            )
        queries = self.layer_norm1(queries)
        queries = queries + self.cross_attention_token_to_image(
            query=queries + query_pe, key=keys + key_pe, value=keys
        )
        queries = self.layer_norm2(queries)
        queries = self.layer_norm3(queries + self.mlp_block(queries))
        keys = keys + self.cross_attention_image_to_token(
            query=keys + key_pe, key=queries + query_pe, value=queries
        )
        return queries, self.layer_norm4(keys)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "mlp_dim": self.mlp_dim,
            "skip_first_layer_pe": self.skip_first_layer_pe,
            "attention_downsample_rate": self.attention_downsample_rate,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class TwoWayTransformer(keras.layers.Layer):
    """The decoder's two-way transformer between prompt tokens and image tokens."""

    def __init__(
        self,
        *,
        depth=2,
        embed_dim=256,
        num_heads=8,
        mlp_dim=2048,
        activation="relu",
        attention_downsample_rate=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.depth = depth
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.activation = activation
        self.attention_downsample_rate = attention_downsample_rate
        self.layers = [
            TwoWayMultiHeadAttention(
                num_heads=num_heads,
                key_dim=embed_dim // num_heads,
                mlp_dim=mlp_dim,
                skip_first_layer_pe=(i == 0),
                attention_downsample_rate=attention_downsample_rate,
                activation=activation,
            )
            for i in range(depth)
        ]
        self.final_attention_token_to_image = MultiHeadAttentionWithDownsampling(
            num_heads=num_heads,
            key_dim=embed_dim // num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.final_layer_norm = keras.layers.LayerNormalization(epsilon=1e-5)

    def build(self, input_shape=None):
        for layer in self.layers:
            layer.build()
        self.final_attention_token_to_image.build()
        self.final_layer_norm.build([None, None, self.embed_dim])
        self.built = True

    def call(self, image_embedding, image_pe, point_embedding):
        shape = ops.shape(image_embedding)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        keys = ops.reshape(image_embedding, (b, h * w, c))
        shape = ops.shape(image_pe)
        image_pe = ops.reshape(image_pe, (shape[0], shape[1] * shape[2], shape[3]))
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(
                queries=queries, keys=keys, query_pe=point_embedding, key_pe=image_pe
            )
        queries = queries + self.final_attention_token_to_image(
            query=queries + point_embedding, key=keys + image_pe, value=keys
        )
        return self.final_layer_norm(queries), keys

    def get_config(self):
        return {
            **super().get_config(),
            "depth": self.depth,
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "activation": self.activation,
            "attention_downsample_rate": self.attention_downsample_rate,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SAMMaskDecoder(keras.layers.Layer):
    """Image and prompt embeddings -> mask logits (B, 1 + multimask, 4e, 4e) and IoU scores."""

    def __init__(
        self,
        *,
        transformer_dim=256,
        transformer=None,
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        activation="gelu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.transformer_dim = transformer_dim
        if transformer is None:
            transformer = TwoWayTransformer()
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_head_depth = iou_head_depth
        self.iou_head_hidden_dim = iou_head_hidden_dim
        self.activation = activation
        self.iou_token = keras.layers.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = keras.layers.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = keras.models.Sequential(
            [
                keras.layers.Conv2DTranspose(transformer_dim // 4, kernel_size=2, strides=2),
                keras.layers.LayerNormalization(epsilon=1e-6),
                keras.layers.Activation(activation),
                keras.layers.Conv2DTranspose(transformer_dim // 8, kernel_size=2, strides=2),
                keras.layers.Activation(activation),
            ]
        )
        self.output_hypernetworks_mlps = [
            MLP(transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        ]
        self.iou_prediction_head = MLP(iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def build(self, input_shape=None):
        self.transformer.build()
        self.iou_token.build([None])
        self.mask_tokens.build([None])
        self.output_upscaling.build([None, None, None, self.transformer_dim])
        for mlp in self.output_hypernetworks_mlps:
            mlp.build([None, self.transformer_dim])
        self.iou_prediction_head.build([None, self.transformer_dim])
        self.built = True

    def call(self, inputs):
        masks, iou_pred = self._predict_masks(
            image_embeddings=inputs["image_embeddings"],
            image_pe=inputs["image_pe"],
            sparse_prompt_embeddings=inputs["sparse_prompt_embeddings"],
            dense_prompt_embeddings=inputs["dense_prompt_embeddings"],
        )
        return {"masks": masks, "iou_pred": iou_pred}

    def _predict_masks(
        self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
    ):
        output_tokens = ops.concatenate(
            [
                self.iou_token(ops.arange(1, dtype="int32")),
                self.mask_tokens(ops.arange(self.num_mask_tokens, dtype="int32")),
            ],
            axis=0,
        )
        output_tokens = ops.broadcast_to(
            output_tokens[None, ...],
            shape=(
                ops.shape(sparse_prompt_embeddings)[0],
                ops.shape(output_tokens)[0],
                ops.shape(output_tokens)[1],
            ),
        )
        tokens = ops.concatenate([output_tokens, sparse_prompt_embeddings], axis=1)
        grid = (
            ops.shape(tokens)[0],
            ops.shape(image_embeddings)[1],
            ops.shape(image_embeddings)[2],
            ops.shape(image_embeddings)[3],
        )
        source = ops.broadcast_to(image_embeddings, shape=grid) + dense_prompt_embeddings
        positional_source = ops.broadcast_to(image_pe, shape=grid)
        shape = ops.shape(source)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        hidden_state, source = self.transformer(source, positional_source, tokens)
        iou_token_out = hidden_state[:, 0, :]
        mask_tokens_out = hidden_state[:, 1 : (1 + self.num_mask_tokens), :]
        upscaled = self.output_upscaling(ops.reshape(source, (b, h, w, c)))
        hyper_in = ops.stack(
            [
                self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                for i in range(self.num_mask_tokens)
            ],
            axis=1,
        )
        shape = ops.shape(upscaled)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        upscaled = ops.reshape(ops.transpose(upscaled, axes=(0, 3, 1, 2)), (b, c, h * w))
        masks = ops.reshape(hyper_in @ upscaled, (b, self.num_mask_tokens, h, w))
        return masks, self.iou_prediction_head(iou_token_out)

    def get_config(self):
        return {
            **super().get_config(),
            "transformer_dim": self.transformer_dim,
            "transformer": keras.saving.serialize_keras_object(self.transformer),
            "num_multimask_outputs": self.num_multimask_outputs,
            "iou_head_depth": self.iou_head_depth,
            "iou_head_hidden_dim": self.iou_head_hidden_dim,
            "activation": self.activation,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config, transformer=keras.layers.deserialize(config["transformer"]))
        return super().from_config(config)
