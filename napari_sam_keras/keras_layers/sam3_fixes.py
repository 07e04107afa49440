"""SAM 3 concept segmentation on keras-hub's layers, with keras-hub 0.32's defects corrected.

keras-hub 0.32's ``SAM3PromptableConceptBackbone`` holds the right layers, but three
defects make it differ from the reference (Meta's ``sam3`` and Hugging Face
``transformers``).  We do not patch keras-hub: each correction is ours and named, and
``napari_sam_keras.model.sam3_loading.upstream_defects`` says which defects the installed
keras-hub still has (``tests/core/test_sam3_fixes.py`` fails when one is fixed upstream,
so that we drop our correction then).  ``docs/keras-hub-sam3-issues.md`` is the report.

1. Tokenizer: ``SAM3Tokenizer`` cannot be built without tensorflow-text;
   :mod:`napari_sam_keras.model.clip_tokenizer` is ours.
2. Text encoder: ``SAM3TextEncoder`` attends bidirectionally (a padding mask only); the
   reference is CLIP's *causal* text transformer.  :func:`causal_text_features` runs the
   same layers with the causal mask.
3. Geometry encoder: the backbone calls it as ``(boxes, box_labels, box_masks)`` while
   its signature is ``(box_embeddings, box_masks, box_labels)``: the labels become the
   validity mask, so a negative exemplar (label 0) is dropped as padding and every box
   counts as positive.  :class:`ConceptDecoder`, the prompt step of our forward pass
   over the backbone's layers (:class:`ConceptForward`), passes them by keyword.

Text only (no exemplar box): like Meta's reference (``Sam3Image._encode_prompt`` always
runs the geometry encoder, whose CLS token is kept with no box), the geometry encoder's
CLS token is part of the prompt, as keras-hub does; ``transformers`` 5.x skips it (the
logits of a random model then differ by ~4e-3).  We follow Meta.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .sam3_forward import detr_encoder_features, vit_features


def causal_text_features(text_encoder, token_ids, padding_mask):
    """keras-hub's ``SAM3TextEncoder`` forward with CLIP's causal mask (defect 2).

    Same layers and weights; a token attends to itself, earlier tokens, and no padding.
    """
    x = text_encoder.embedding(token_ids)
    length = ops.shape(x)[1]
    keys = ops.cast(padding_mask, "bool")[:, None, None, :]
    causal = ops.tril(ops.ones((length, length), dtype="int32")) > 0
    mask = ops.logical_and(keys, causal[None, None])
    for layer in text_encoder.encoder_layers:
        x = layer(x, mask)
    return text_encoder.layer_norm(x)


def bidirectional_text_features(text_encoder, token_ids, padding_mask):
    """keras-hub's own ``SAM3TextEncoder`` call (for the upstream check only)."""
    return text_encoder(token_ids, padding_mask)


class _OnBackbone(keras.Model):
    """A forward step over a keras-hub backbone's (built) layers and weights."""

    def __init__(self, backbone, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self.built = True  # its variables are the backbone's


class ConceptImageEncoder(_OnBackbone):
    """Step 1, the costly one: the image's features (SAM 3's ViT and its FPN).

    Input: ``pixel_values`` (B, S, S, 3) normalised to -1..1.  Output: ``fpn``, the three
    FPN levels SAM 3 uses (finest first; the coarsest level is never used), and
    ``position``, the position encodings of the last of them.  They depend on the image
    only: the prompt steps reuse them.  keras-hub's layers, with the ViT's attention in
    cache-sized steps (:mod:`.sam3_forward`).
    """

    def call(self, pixel_values, training=False):
        hidden, position = vit_features(self.backbone.vision_encoder, pixel_values)
        return {"fpn": list(hidden[:-1]), "position": position[-2]}


class ConceptTextEncoder(_OnBackbone):
    """Step 2: the text's features, CLIP's causal text transformer (defect 2) and projection.

    Inputs: ``token_ids`` and ``padding_mask`` (B, 32).  Output (B, 32, D).
    """

    def call(self, inputs, training=False):
        b = self.backbone
        mask = ops.cast(inputs["padding_mask"], "bool")
        return b.text_projection(causal_text_features(b.text_encoder, inputs["token_ids"], mask))


class ConceptDecoder(_OnBackbone):
    """Step 3: the prompt (text + exemplar boxes) on the image's features -> the instances.

    Inputs: ``fpn`` and ``position`` (:class:`ConceptImageEncoder`), ``text``
    (:class:`ConceptTextEncoder`), ``padding_mask`` (B, 32), ``boxes`` (B, N, 5) as
    (batch index, cx, cy, w, h) normalised to 0..1 (N may be 0), ``box_labels`` (B, N)
    1 positive / 0 negative.  Outputs: see :class:`ConceptForward`.
    """

    def call(self, inputs, training=False):
        b = self.backbone
        fpn, position, text = inputs["fpn"], inputs["position"], inputs["text"]
        padding_mask = ops.cast(inputs["padding_mask"], "bool")
        box_labels = ops.cast(inputs["box_labels"], "int32")
        # Defect 3: by keyword, so the labels are the labels and every box is valid.
        geometry, geometry_mask = b.geometry_encoder(
            box_embeddings=inputs["boxes"],
            box_masks=ops.ones_like(box_labels) > 0,
            box_labels=box_labels,
            fpn_hidden_states=fpn[-1],
            fpn_position_encodings=position,
        )
        prompt = ops.concatenate([text, geometry], axis=1)
        prompt_mask = ops.concatenate([padding_mask, ops.cast(geometry_mask, "bool")], axis=1)
        # keras-hub's DETR encoder, its self-attention in cache-sized steps
        encoded = detr_encoder_features(b.detr_encoder, fpn[-1], prompt, position, prompt_mask)
        decoded = b.detr_decoder(
            vision_features=encoded[0],
            text_features=prompt,
            vision_pos_encodings=encoded[1],
            text_masks=prompt_mask,
        )
        hidden = decoded[0]
        box_offsets = b.detr_decoder.box_head(hidden)
        logits = b.dot_product_scoring(
            decoder_hidden_states=hidden, text_features=prompt, text_masks=prompt_mask
        )
        pred_boxes, pred_logits, presence_logits = b.box_decoder(
            box_offsets=box_offsets,
            reference_boxes=decoded[1],
            pred_logits=logits,
            presence_logits=decoded[2],
        )
        pred_masks, semantic_segs = b.mask_decoder(
            decoder_queries=hidden[:, -1],
            backbone_features=fpn,
            encoder_hidden_states=encoded[0],
            prompt_features=prompt,
            prompt_masks=prompt_mask,
        )
        return {
            "pred_logits": pred_logits,
            "presence_logits": presence_logits,
            "pred_boxes": pred_boxes,
            "pred_masks": pred_masks,
            "semantic_segs": semantic_segs,
        }


class ConceptForward(_OnBackbone):
    """SAM 3 promptable concept segmentation over a keras-hub backbone's layers.

    The three steps in one call: :class:`ConceptImageEncoder`,
    :class:`ConceptTextEncoder`, :class:`ConceptDecoder` (the model runs them as three
    compiled calls, so that a job can stop between them and a new number of exemplar
    boxes recompiles only the decoder).

    Inputs (a dict, batch first): ``pixel_values`` (B, S, S, 3) normalised to -1..1,
    ``token_ids`` and ``padding_mask`` (B, 32), ``boxes`` (B, N, 5) as (batch index,
    cx, cy, w, h) normalised to 0..1 (N may be 0), ``box_labels`` (B, N) 1 positive /
    0 negative.  Outputs: ``pred_logits`` (B, Q), ``presence_logits`` (B, 1),
    ``pred_boxes`` (B, Q, 4) XYXY in 0..1, ``pred_masks`` (B, h, w, Q) logits,
    ``semantic_segs`` (B, h, w, 1).
    """

    def __init__(self, backbone, **kwargs) -> None:
        super().__init__(backbone, **kwargs)
        self.image_encoder = ConceptImageEncoder(backbone)
        self.text_encoder = ConceptTextEncoder(backbone)
        self.decoder = ConceptDecoder(backbone)

    def call(self, inputs, training=False):
        image = self.image_encoder(inputs["pixel_values"])
        text = self.text_encoder(
            {"token_ids": inputs["token_ids"], "padding_mask": inputs["padding_mask"]}
        )
        prompt = {k: inputs[k] for k in ("padding_mask", "boxes", "box_labels")}
        return self.decoder({**image, "text": text, **prompt})


# --- is keras-hub still defective? ---------------------------------------------------------


def text_encoder_is_bidirectional(text_encoder) -> bool:
    """Whether keras-hub's text encoder lets a token see later tokens (defect 2)."""
    ids = np.array([[1, 2, 3, 4]], np.int32)
    other = np.array([[1, 2, 3, 5]], np.int32)
    mask = np.ones((1, 4), np.int32)
    first = ops.convert_to_numpy(bidirectional_text_features(text_encoder, ids, mask))
    changed = ops.convert_to_numpy(bidirectional_text_features(text_encoder, other, mask))
    return not np.allclose(first[:, 0], changed[:, 0], atol=1e-6)


def backbone_ignores_negative_boxes(backbone) -> bool:
    """Whether keras-hub's own backbone graph feeds the box labels in as the box masks.

    Read from the functional graph (which tensor reaches the geometry encoder's
    ``box_masks`` parameter), so no forward pass is needed; the labels there mean a
    negative exemplar is dropped as padding (defect 3).
    """
    node = backbone.geometry_encoder._inbound_nodes[0]
    args, kwargs = node.arguments.args, node.arguments.kwargs
    masks = kwargs["box_masks"] if "box_masks" in kwargs else args[1]
    labels = backbone.input["box_labels"]
    return masks is labels
