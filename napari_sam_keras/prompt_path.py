"""The prompt path: prompt encoder + mask decoder, compiled once per model and backend.

The official prompt encoder makes a different number of tokens for each kind
of prompt (points, box, both, the pad point), which would mean one
compilation per kind.  Here every prompt is padded to a fixed number of
point slots and one box, and the padding tokens are masked out of every
attention in which they are keys.  Real tokens then see exactly what they
see in the official model, so outputs match it to float round-off, while
the compiled function keeps one input signature.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from .backend import import_keras
from .compiled_call import CompiledCall
from .config import SAMConfig

#: Point slots per prompt in the compiled function.  More points use the next
#: power of two (one extra compilation per size).
DEFAULT_POINT_SLOTS = 16
NUM_OUTPUT_TOKENS_EXTRA = 1  # the IoU token before the mask tokens


def _attention(layer: Any, query: Any, key: Any, value: Any, key_mask: Any | None) -> Any:
    """keras-cv ``MultiHeadAttentionWithDownsampling`` with an optional key padding mask."""
    ops = import_keras().ops
    q = layer.query_proj(query)
    k = layer.key_proj(key)
    v = layer.value_proj(value)
    heads = layer.num_heads

    def split(x):
        b, n = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (b, n, heads, -1)), (0, 2, 1, 3))

    q, k, v = split(q), split(k), split(v)
    per_head = q.shape[-1]
    logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(per_head)
    if key_mask is not None:
        logits = ops.where(key_mask[:, None, None, :] > 0.5, logits, -1e9)
    out = ops.matmul(ops.softmax(logits, axis=-1), v)
    b, n = ops.shape(out)[0], ops.shape(out)[2]
    out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, n, heads * per_head))
    return layer.out_proj(out)


def _build_prompt_decoder_class():
    keras = import_keras()
    ops = keras.ops

    class PromptDecoder(keras.Model):
        """Padded prompts + image embedding -> low-res mask logits and IoU predictions."""

        def __init__(self, prompt_encoder: Any, mask_decoder: Any, config: SAMConfig, **kw):
            super().__init__(**kw)
            self.prompt_encoder = prompt_encoder
            self.mask_decoder = mask_decoder
            self.sam_config = config
            # Its layers are built (they belong to a built SAM model); it has no weights of its own.
            self.built = True

        def call(self, inputs, training=False):
            enc, dec, cfg = self.prompt_encoder, self.mask_decoder, self.sam_config
            emb = inputs["image_embeddings"]
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

            e = cfg.embedding_size
            no_mask = ops.reshape(enc.no_mask_embed(zero), (1, 1, 1, cfg.prompt_embed_dim))
            has_mask = ops.reshape(inputs["has_mask"], (-1, 1, 1, 1))

            def with_masks():
                mask_emb = enc.mask_downscaler(inputs["mask_input"])
                return ops.where(has_mask > 0.5, mask_emb, no_mask)

            def without_masks():
                return ops.broadcast_to(no_mask, (batch, e, e, cfg.prompt_embed_dim))

            # the mask downscaler runs only when some prompt has a mask input
            dense = ops.cond(ops.any(has_mask > 0.5), with_masks, without_masks)

            image_pe = ops.reshape(pe_layer.encode_image((e, e)), (1, e * e, cfg.prompt_embed_dim))
            keys = ops.reshape(emb + dense, (batch, e * e, cfg.prompt_embed_dim))
            keys_pe = ops.broadcast_to(image_pe, ops.shape(keys))
            queries = tokens
            queries, keys = self._two_way(queries, keys, tokens, keys_pe, token_valid)

            iou_out = queries[:, 0]
            upscaled = dec.output_upscaling(ops.reshape(keys, (batch, e, e, cfg.prompt_embed_dim)))
            hyper = ops.stack(
                [dec.output_hypernetworks_mlps[i](queries[:, 1 + i]) for i in range(num_masks)],
                axis=1,
            )
            masks = ops.einsum("bkc,bhwc->bkhw", hyper, upscaled)
            return {"low_res_logits": masks, "iou_predictions": dec.iou_prediction_head(iou_out)}

        def _two_way(self, queries, keys, query_pe, key_pe, token_valid):
            t = self.mask_decoder.transformer
            for layer in t.layers:
                if layer.skip_first_layer_pe:
                    queries = _attention(
                        layer.self_attention, queries, queries, queries, token_valid
                    )
                else:
                    q = queries + query_pe
                    queries = queries + _attention(layer.self_attention, q, q, queries, token_valid)
                queries = layer.layer_norm1(queries)
                q, k = queries + query_pe, keys + key_pe
                queries = queries + _attention(
                    layer.cross_attention_token_to_image, q, k, keys, None
                )
                queries = layer.layer_norm2(queries)
                queries = layer.layer_norm3(queries + layer.mlp_block(queries))
                q, k = queries + query_pe, keys + key_pe
                keys = keys + _attention(
                    layer.cross_attention_image_to_token, k, q, queries, token_valid
                )
                keys = layer.layer_norm4(keys)
            q, k = queries + query_pe, keys + key_pe
            queries = queries + _attention(t.final_attention_token_to_image, q, k, keys, None)
            return t.final_layer_norm(queries), keys

    return PromptDecoder


def point_slots_for(num_points: int, minimum: int = DEFAULT_POINT_SLOTS) -> int:
    """Point slots of the compiled function that can hold ``num_points`` (+ the pad point)."""
    slots = minimum
    while slots < num_points + 1:
        slots *= 2
    return slots


def batch_slots_for(batch: int) -> int:
    """Prompt batches are padded to a power of two so few batch sizes get compiled."""
    return 1 << max(0, int(batch - 1).bit_length())


class PromptPath:
    """Runs padded prompts through the compiled prompt encoder + mask decoder.

    Coordinates are in the model's input frame (after the longest-side resize).
    """

    def __init__(self, sam_model: Any, config: SAMConfig, jit_compile: bool = True) -> None:
        cls = _build_prompt_decoder_class()
        self.config = config
        # same dtype policy as the network, so float inputs are cast to its compute dtype
        self.decoder = cls(
            sam_model.prompt_encoder, sam_model.mask_decoder, config, dtype=sam_model.dtype_policy
        )
        self.compiled = CompiledCall(self.decoder, jit_compile=jit_compile)
        self._lock = threading.Lock()
        self._warm_thread: threading.Thread | None = None

    def start_warm_up(self) -> None:
        """Compile for single prompts in a background thread (e.g. while an embedding runs).

        The first real prompt then does not wait for the compiler.
        """
        if self._warm_thread is not None:
            return
        cfg = self.config
        dummy = np.zeros(
            (1, cfg.embedding_size, cfg.embedding_size, cfg.prompt_embed_dim), np.float32
        )

        def warm():
            try:
                self.run(
                    dummy, [np.zeros((1, 2), np.float32)], [np.ones(1, np.int32)], [None], [None]
                )
            except Exception:  # a failure shows again, with its message, on the first real call
                pass

        self._warm_thread = threading.Thread(target=warm, name="sam-prompt-warm-up", daemon=True)
        self._warm_thread.start()

    @property
    def trace_count(self) -> int:
        return self.compiled.trace_count

    def run(
        self,
        image_embedding: np.ndarray,
        point_coords: list[np.ndarray | None],
        point_labels: list[np.ndarray | None],
        boxes: list[np.ndarray | None],
        mask_inputs: list[np.ndarray | None],
        min_point_slots: int = DEFAULT_POINT_SLOTS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode a batch of prompts; returns (low-res logits (B, 4, m, m), IoU (B, 4)).

        Each list has one entry per prompt: points (N, 2) and labels (N,) or
        None, a box (4,) or None, a low-res mask (m, m) or None.  The pad point
        is added here, as the official prompt encoder does.
        """
        cfg = self.config
        n = len(point_coords)
        most = max((len(p) for p in point_coords if p is not None), default=0)
        slots = point_slots_for(most, min_point_slots)
        batch = batch_slots_for(n)
        m = cfg.low_res_mask_size
        pts = np.zeros((batch, slots, 2), np.float32)
        labels = np.full((batch, slots), -1, np.int32)
        valid = np.zeros((batch, slots), np.float32)
        box_arr = np.zeros((batch, 2, 2), np.float32)
        box_valid = np.zeros((batch,), np.float32)
        masks = np.zeros((batch, m, m, 1), np.float32)
        has_mask = np.zeros((batch,), np.float32)
        for i in range(n):
            p, lab, box, mask = point_coords[i], point_labels[i], boxes[i], mask_inputs[i]
            k = 0 if p is None else len(p)
            if k:
                pts[i, :k] = p
                labels[i, :k] = lab
                valid[i, :k] = 1.0
                if box is None:  # the official pad point: (0, 0) with label -1
                    valid[i, k] = 1.0
            if box is not None:
                box_arr[i] = np.asarray(box, np.float32).reshape(2, 2)
                box_valid[i] = 1.0
            if mask is not None:
                masks[i, :, :, 0] = mask
                has_mask[i] = 1.0
        with self._lock:
            out = self.compiled(
                {
                    "image_embeddings": image_embedding.astype(np.float32, copy=False),
                    "points": pts,
                    "point_labels": labels,
                    "point_valid": valid,
                    "boxes": box_arr,
                    "box_valid": box_valid,
                    "mask_input": masks,
                    "has_mask": has_mask,
                }
            )
        low_res = out["low_res_logits"][:n].astype(np.float32, copy=False)
        return low_res, out["iou_predictions"][:n].astype(np.float32, copy=False)
