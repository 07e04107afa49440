"""The prompt decoder as a Keras model: SAM's prompt encoder + mask decoder on padded prompts.

Every prompt is padded to a fixed number of point slots and one box, and the
padding tokens are masked out of every attention in which they are keys, so
every prompt kind shares one compilation and matches the official model to
float round-off.  See :mod:`napari_sam_keras.model.prompt_path` for the runner.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from ..model.config import SAMConfig

NUM_OUTPUT_TOKENS_EXTRA = 1  # the IoU token before the mask tokens


def _split_heads(x: Any, heads: int) -> Any:
    """(B, N, heads * d) -> (B, heads, N, d)."""
    b, n = ops.shape(x)[0], ops.shape(x)[1]
    return ops.transpose(ops.reshape(x, (b, n, heads, -1)), (0, 2, 1, 3))


def _attention(
    layer: Any,
    query: Any,
    key: Any,
    value: Any,
    key_mask: Any | None,
    projected: dict[str, Any] | None = None,
    fold: bool | None = None,
) -> Any:
    """keras-cv ``MultiHeadAttentionWithDownsampling`` with an optional key padding mask.

    ``projected`` holds query/key/value projections (already split into heads)
    computed ahead, e.g. once per image; their inputs are then not used.

    Between a handful of prompt tokens and the 4096 image tokens, projecting
    the image side costs ``N * C * inner`` multiply-adds.  When ``heads *
    tokens < inner`` it is cheaper to fold the tokens' projections into the
    weights instead (``q_h . (x W_k,h) = (q_h W_k,h^T) . x``), which is the same
    sum in another order: the result matches to float round-off.  ``fold``
    forces (True) or forbids (False) that; None decides by that cost.
    """
    projected = projected or {}
    heads = layer.num_heads
    inner = int(layer.query_proj.kernel.shape[-1])
    n_query = int(query.shape[1]) if query is not None else int(projected["q"].shape[2])
    n_key = int(key.shape[1]) if key is not None else int(projected["k"].shape[2])

    def folds(few: int, many: int) -> bool:
        if fold is None:
            return heads * few < inner and many > inner
        return fold and many > few

    if "k" not in projected and "v" not in projected and folds(n_key, n_query):
        return _attention_to_few_keys(layer, query, key, value, key_mask, projected.get("q"))
    if not projected and key_mask is None and folds(n_query, n_key):
        return _attention_from_few_queries(layer, query, key, value)
    return _direct_attention(layer, query, key, value, key_mask, projected)


def _direct_attention(layer, query, key, value, key_mask, projected):
    heads = layer.num_heads
    q = projected.get("q")
    k = projected.get("k")
    v = projected.get("v")
    q = _split_heads(layer.query_proj(query), heads) if q is None else q
    k = _split_heads(layer.key_proj(key), heads) if k is None else k
    v = _split_heads(layer.value_proj(value), heads) if v is None else v
    per_head = q.shape[-1]
    logits = ops.matmul(q, ops.swapaxes(k, -1, -2)) / math.sqrt(per_head)
    if key_mask is not None:
        logits = ops.where(key_mask[:, None, None, :] > 0.5, logits, -1e9)
    out = ops.matmul(ops.softmax(logits, axis=-1), v)
    b, n = ops.shape(out)[0], ops.shape(out)[2]
    out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, n, heads * per_head))
    return layer.out_proj(out)


def _weights(dense: Any, dtype: Any) -> tuple[Any, Any]:
    return ops.cast(dense.kernel, dtype), ops.cast(dense.bias, dtype)


def _attention_to_few_keys(layer, query, key, value, key_mask, q_heads):
    """Many queries (image tokens) attend to a few keys (prompt tokens), weights folded."""
    heads = layer.num_heads
    k = _split_heads(layer.key_proj(key), heads)  # (B, h, T, d)
    v = _split_heads(layer.value_proj(value), heads)
    per_head = k.shape[-1]
    scale = 1.0 / math.sqrt(per_head)
    if q_heads is not None:
        logits = ops.matmul(q_heads, ops.swapaxes(k, -1, -2))  # (B, h, N, T)
    else:
        w_q, b_q = _weights(layer.query_proj, query.dtype)
        c = w_q.shape[0]
        # (x W_q + b_q) . k = x (W_q k^T) + b_q . k, per head
        w_qk = ops.einsum("chd,bhtd->bcht", ops.reshape(w_q, (c, heads, per_head)), k)
        b_qk = ops.einsum("hd,bhtd->bht", ops.reshape(b_q, (heads, per_head)), k)
        logits = ops.einsum("bnc,bcht->bhnt", query, w_qk) + b_qk[:, :, None, :]
    logits = logits * scale
    if key_mask is not None:
        logits = ops.where(key_mask[:, None, None, :] > 0.5, logits, -1e9)
    probs = ops.softmax(logits, axis=-1)
    w_o, b_o = _weights(layer.out_proj, v.dtype)
    c_out = w_o.shape[-1]
    # concat_h(P_h v_h) W_o = sum_h P_h (v_h W_o,h)
    v_o = ops.einsum("bhtd,hdc->bhtc", v, ops.reshape(w_o, (heads, per_head, c_out)))
    return ops.einsum("bhnt,bhtc->bnc", probs, v_o) + b_o


def _attention_from_few_queries(layer, query, key, value):
    """A few queries (prompt tokens) attend to many keys (image tokens), weights folded."""
    heads = layer.num_heads
    q = _split_heads(layer.query_proj(query), heads)  # (B, h, T, d)
    per_head = q.shape[-1]
    w_k, _ = _weights(layer.key_proj, key.dtype)
    c = w_k.shape[0]
    # q . (x W_k + b_k) = (q W_k^T) . x + q . b_k; the last term is the same for every
    # key, and softmax does not change when a constant is added to all its inputs.
    q_k = ops.einsum("bhtd,chd->bhtc", q, ops.reshape(w_k, (c, heads, per_head)))
    logits = ops.einsum("bhtc,bnc->bhtn", q_k, key) / math.sqrt(per_head)
    probs = ops.softmax(logits, axis=-1)
    # P (x W_v + b_v) = (P x) W_v + b_v, since each row of P sums to 1
    pooled = ops.einsum("bhtn,bnc->bhtc", probs, value)
    w_v, b_v = _weights(layer.value_proj, value.dtype)
    out = ops.einsum("bhtc,chd->bthd", pooled, ops.reshape(w_v, (c, heads, per_head)))
    b, t = ops.shape(out)[0], ops.shape(out)[1]
    out = ops.reshape(out, (b, t, heads * per_head)) + b_v
    return layer.out_proj(out)


#: What :meth:`PromptDecoder.prepare_image` computes once per image.
PREPARED_KEYS = ("embedding", "keys", "key_pe", "t2i_k", "t2i_v", "i2t_q")


class PromptDecoder(keras.Model):
    """Padded prompts + prepared image -> low-res mask logits and IoU predictions.

    Inputs: the tensors of :meth:`prepare_image` (batch 1, shared by every
    prompt) and the padded prompts.  With ``mask_input``/``has_mask`` among
    the inputs, prompts that carry a mask input get their own image side.
    """

    def __init__(
        self,
        prompt_encoder: Any,
        mask_decoder: Any,
        config: SAMConfig,
        fold_weights: bool | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.sam_config = config
        self.fold_weights = fold_weights
        # Its layers are built (they belong to a built SAM model); it has no weights of its own.
        self.built = True

    def prepare_image(self, embedding: Any, dense: Any | None = None) -> dict[str, Any]:
        """The prompt-independent part of the decoder for image embeddings (B, e, e, c).

        The first two-way layer's image-side projections depend only on the
        image (plus the dense prompt, which is the learned "no mask" vector
        unless a mask is given), so every prompt on that image shares them.
        """
        cfg, enc = self.sam_config, self.prompt_encoder
        e, c = cfg.embedding_size, cfg.prompt_embed_dim
        zero = ops.zeros((1,), "int32")
        if dense is None:
            dense = ops.reshape(enc.no_mask_embed(zero), (1, 1, 1, c))
        summed = embedding + dense
        batch = ops.shape(summed)[0]
        keys = ops.reshape(summed, (batch, e * e, c))
        pe = enc.positional_embedding_layer.encode_image((e, e))
        key_pe = ops.reshape(ops.cast(pe, keys.dtype), (1, e * e, c))
        first = self.mask_decoder.transformer.layers[0]
        t2i, i2t = first.cross_attention_token_to_image, first.cross_attention_image_to_token
        return {
            "embedding": ops.broadcast_to(embedding, ops.shape(summed)),
            "keys": keys,
            "key_pe": key_pe,
            "t2i_k": _split_heads(t2i.key_proj(keys + key_pe), t2i.num_heads),
            "t2i_v": _split_heads(t2i.value_proj(keys), t2i.num_heads),
            "i2t_q": _split_heads(i2t.query_proj(keys + key_pe), i2t.num_heads),
        }

    def call(self, inputs, training=False):
        enc, dec, cfg = self.prompt_encoder, self.mask_decoder, self.sam_config
        points = inputs["points"]
        labels = ops.expand_dims(inputs["point_labels"], -1)
        batch = ops.shape(points)[0]
        zero = ops.zeros((1,), "int32")
        size = (cfg.image_size, cfg.image_size)
        pe_layer = enc.positional_embedding_layer

        point_pe = pe_layer.encode_coordinates(points + 0.5, size)
        point_emb = ops.where(
            labels == 1,
            point_pe + enc.foreground_point_embed(zero),
            ops.where(
                labels == 0,
                point_pe + enc.background_point_embed(zero),
                ops.where(labels == -1, enc.not_a_point_embed(zero) + 0 * point_pe, point_pe),
            ),
        )
        corner_pe = pe_layer.encode_coordinates(inputs["boxes"] + 0.5, size)
        box_emb = ops.stack(
            [
                corner_pe[:, 0] + enc.top_left_corner_embed(zero),
                corner_pe[:, 1] + enc.bottom_right_corner_embed(zero),
            ],
            axis=1,
        )
        box_valid = ops.expand_dims(inputs["box_valid"], -1)
        prompt_valid = ops.concatenate([inputs["point_valid"], box_valid, box_valid], axis=1)
        sparse = ops.concatenate([point_emb, box_emb], axis=1) * prompt_valid[..., None]

        num_masks = dec.num_mask_tokens
        output_tokens = ops.concatenate(
            [dec.iou_token(zero), dec.mask_tokens(ops.arange(num_masks, dtype="int32"))], 0
        )
        output_tokens = ops.broadcast_to(
            output_tokens[None], (batch, num_masks + 1, cfg.prompt_embed_dim)
        )
        tokens = ops.concatenate([output_tokens, sparse], axis=1)
        token_valid = ops.concatenate(
            [ops.ones((batch, num_masks + 1), prompt_valid.dtype), prompt_valid], axis=1
        )

        image = {k: inputs[k] for k in PREPARED_KEYS}
        if "mask_input" in inputs:
            image = self._with_mask_inputs(image, inputs, batch)
        queries, keys = self._two_way(tokens, tokens, token_valid, image)

        iou_out = queries[:, 0]
        hyper = ops.stack(
            [dec.output_hypernetworks_mlps[i](queries[:, 1 + i]) for i in range(num_masks)],
            axis=1,
        )
        masks = self._upscaled_masks(keys, hyper)
        return {"low_res_logits": masks, "iou_predictions": dec.iou_prediction_head(iou_out)}

    def _upscaled_masks(self, keys, hyper):
        """``output_upscaling`` + the hypernetwork product, in sub-pixel order.

        Each stride-2 2x2 transposed convolution is one matmul per pixel into
        its 2x2 sub-pixels; LayerNorm and GELU are per pixel too.  Keeping the
        sub-pixels as extra rows until the (small) mask logits are formed saves
        shuffling the 256x256x32 feature map, which costs more than the math.
        """
        conv1, norm, act1, conv2, act2 = self.mask_decoder.output_upscaling.layers
        batch, e = ops.shape(keys)[0], self.sam_config.embedding_size
        x = keys
        for conv, after in ((conv1, lambda y: act1(norm(y))), (conv2, act2)):
            kh, kw, c_out, c_in = conv.kernel.shape
            kernel = ops.cast(conv.kernel, x.dtype)
            w = ops.reshape(ops.transpose(kernel, (3, 0, 1, 2)), (c_in, kh * kw * c_out))
            x = ops.reshape(ops.matmul(x, w), (batch, -1, c_out))
            x = after(x + ops.cast(conv.bias, x.dtype))
        masks = ops.einsum("bpc,bkc->bkp", x, hyper)
        # rows of x: (i, j, p1, q1, p2, q2) -> pixel (4i + 2 p1 + p2, 4j + 2 q1 + q2)
        k = ops.shape(hyper)[1]
        masks = ops.reshape(masks, (batch, k, e, e, kh, kw, kh, kw))
        masks = ops.transpose(masks, (0, 1, 2, 4, 6, 3, 5, 7))
        return ops.reshape(masks, (batch, k, e * kh * kh, e * kw * kw))

    def _with_mask_inputs(self, image, inputs, batch):
        """Per-prompt image side when some prompt has a mask input, else the shared one."""
        has_mask = ops.reshape(inputs["has_mask"], (-1, 1, 1, 1))
        no_mask = ops.reshape(
            self.prompt_encoder.no_mask_embed(ops.zeros((1,), "int32")),
            (1, 1, 1, self.sam_config.prompt_embed_dim),
        )

        def with_masks():
            mask_emb = self.prompt_encoder.mask_downscaler(inputs["mask_input"])
            dense = ops.where(has_mask > 0.5, mask_emb, no_mask)
            return self.prepare_image(image["embedding"], dense)

        def shared():
            return {
                k: v if k == "key_pe" else ops.broadcast_to(v, (batch, *v.shape[1:]))
                for k, v in image.items()
            }

        # the mask downscaler runs only when some prompt has a mask input
        return ops.cond(ops.any(has_mask > 0.5), with_masks, shared)

    def _two_way(self, queries, query_pe, token_valid, image):
        t = self.mask_decoder.transformer
        fold = self.fold_weights
        keys, key_pe = image["keys"], image["key_pe"]
        for index, layer in enumerate(t.layers):
            first = index == 0
            if layer.skip_first_layer_pe:
                queries = _attention(
                    layer.self_attention, queries, queries, queries, token_valid, fold=fold
                )
            else:
                q = queries + query_pe
                queries = queries + _attention(
                    layer.self_attention, q, q, queries, token_valid, fold=fold
                )
            queries = layer.layer_norm1(queries)
            q = queries + query_pe
            k = None if first else keys + key_pe
            ahead = {"k": image["t2i_k"], "v": image["t2i_v"]} if first else None
            queries = queries + _attention(
                layer.cross_attention_token_to_image, q, k, keys, None, ahead, fold
            )
            queries = layer.layer_norm2(queries)
            queries = layer.layer_norm3(queries + layer.mlp_block(queries))
            q = queries + query_pe
            k = None if first else keys + key_pe
            ahead = {"q": image["i2t_q"]} if first else None
            keys = keys + _attention(
                layer.cross_attention_image_to_token, k, q, queries, token_valid, ahead, fold
            )
            keys = layer.layer_norm4(keys)
        q, k = queries + query_pe, keys + key_pe
        queries = queries + _attention(
            t.final_attention_token_to_image, q, k, keys, None, fold=fold
        )
        return t.final_layer_norm(queries), keys


class ImagePreparation(keras.Model):
    """Image embeddings -> the prompt decoder's prompt-independent image side."""

    def __init__(self, decoder: Any, **kw):
        super().__init__(dtype=decoder.dtype_policy, **kw)
        self.decoder = decoder
        self.built = True

    def call(self, embedding, training=False):
        return self.decoder.prepare_image(embedding)
