"""Official PyTorch SAM checkpoints (``sam_vit_b_01ec64.pth`` and the like).

The image encoder's tensors belong to its family
(:mod:`napari_sam_keras.model.encoder_families`: SAM's ViT in
:mod:`~napari_sam_keras.model.vit_conversion`, MobileSAM's TinyViT in
:mod:`~napari_sam_keras.model.tiny_vit_conversion`); the prompt encoder's and
mask decoder's, the same for every family, are named here.

An official state dict fixes its own architecture; :func:`config_from_state_dict`
reads it from the tensor shapes, and :func:`assign_state_dict` copies every
tensor into the matching variable of a keras-cv ``SegmentAnythingModel``.
Only numpy is needed once the state dict is read (reading a ``.pth`` file
needs torch, see :func:`napari_sam_keras.model.torch_checkpoints.read_torch_checkpoint`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .config import SAMConfig
from .torch_weights import (
    conv,
    conv_transpose,
    dense_pairs,
    mlp_dense_layers,
    norm_pairs,
    same,
    to_numpy,
)

_DECODER_LAYER = re.compile(r"mask_decoder\.transformer\.layers\.(\d+)\.")
_IOU_LAYER = re.compile(r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.weight")

#: An official SAM (ViT) checkpoint has these; a MobileSAM one the last two.
REQUIRED_KEYS = (
    "image_encoder.patch_embed.proj.weight",
    "image_encoder.pos_embed",
    "prompt_encoder.no_mask_embed.weight",
    "mask_decoder.iou_token.weight",
)


def _encoder_markers() -> list[str]:
    """Every encoder family's marker tensor: finding one under some prefix locates the
    state dict inside a checkpoint."""
    from .encoder_families import encoder_families

    return [family.marker for family in encoder_families()]


def unwrap_state_dict(obj: Any) -> dict[str, np.ndarray]:
    """Find the SAM state dict in a loaded checkpoint (plain, or wrapped in a dict).

    Fine-tuning scripts often save ``{"model": state_dict, ...}`` or
    ``{"state_dict": ...}``, sometimes with a ``module.`` or ``model.``
    prefix on every key; micro-sam saves ``{"model_state": ..., "decoder_state": ...}``
    with or without a ``sam.`` prefix.  Values become float32 numpy arrays.
    """
    candidates = [obj]
    if isinstance(obj, Mapping):
        candidates += [
            obj[k]
            for k in ("model", "state_dict", "model_state_dict", "sam", "model_state")
            if k in obj
        ]
    for cand in candidates:
        if not isinstance(cand, Mapping):
            continue
        keys = [k for k in cand if isinstance(k, str)]
        for prefix in ("", "module.", "model.", "sam.", "module.model."):
            if any(f"{prefix}{marker}" in cand for marker in _encoder_markers()):
                return {k[len(prefix) :]: to_numpy(cand[k]) for k in keys if k.startswith(prefix)}
    from .encoder_families import encoder_families

    found = " or ".join(f"'{f.marker}' ({f.description})" for f in encoder_families())
    raise ModelLoadError(
        f"This file is not an official SAM checkpoint: no {found} tensor found "
        "(is it a SAM 2 or HQ-SAM file?)."
    )


def config_from_state_dict(sd: Mapping[str, np.ndarray]) -> SAMConfig:
    """Read the architecture of an official SAM (any encoder family) from its tensor shapes."""
    from .encoder_families import family_of_state_dict

    family = family_of_state_dict(sd)
    missing = [k for k in REQUIRED_KEYS if k not in sd]
    if family is None or (family.marker == REQUIRED_KEYS[0] and missing):
        raise ModelLoadError(f"Not a complete SAM checkpoint; missing tensors: {missing}")
    try:
        return SAMConfig(
            encoder=family.name, **family.config_fields(sd), **_prompt_decoder_fields(sd)
        )
    except KeyError as err:
        raise ModelLoadError(
            f"Not a complete SAM checkpoint; missing tensor {err.args[0]!r}."
        ) from err
    except (ValueError, IndexError, TypeError, ZeroDivisionError) as err:
        raise ModelLoadError(
            f"Not a complete SAM checkpoint: its tensors do not describe a SAM ({err})."
        ) from err


def _prompt_decoder_fields(sd: Mapping[str, np.ndarray]) -> dict[str, int]:
    """The prompt encoder's and mask decoder's config fields (SAM and MobileSAM alike)."""
    decoder_layers = [int(m.group(1)) for k in sd if (m := _DECODER_LAYER.match(k))]
    iou_layers = [int(m.group(1)) for k in sd if (m := _IOU_LAYER.match(k))]
    if not decoder_layers or not iou_layers:
        raise ModelLoadError("Not a complete SAM checkpoint: it has no mask decoder tensors.")
    return dict(
        prompt_embed_dim=int(sd["prompt_encoder.no_mask_embed.weight"].shape[1]),
        mask_in_chans=int(sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
        decoder_depth=1 + max(decoder_layers),
        decoder_mlp_dim=int(sd["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]),
        num_multimask_outputs=int(sd["mask_decoder.mask_tokens.weight"].shape[0]) - 1,
        iou_head_depth=1 + max(iou_layers),
        iou_head_hidden_dim=int(sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]),
    )


def _attention_pairs(attn: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    for ours, theirs in (
        ("query_proj", "q_proj"),
        ("key_proj", "k_proj"),
        ("value_proj", "v_proj"),
        ("out_proj", "out_proj"),
    ):
        yield from dense_pairs(getattr(attn, ours), f"{prefix}.{theirs}")


def _prompt_encoder_pairs(enc: Any) -> Iterator[tuple[str, Any, Any]]:
    p = "prompt_encoder"
    yield (
        f"{p}.pe_layer.positional_encoding_gaussian_matrix",
        enc.positional_embedding_layer.positional_encoding_gaussian_matrix,
        same,
    )
    for i, layer in enumerate(
        (
            enc.background_point_embed,
            enc.foreground_point_embed,
            enc.top_left_corner_embed,
            enc.bottom_right_corner_embed,
        )
    ):
        yield f"{p}.point_embeddings.{i}.weight", layer.embeddings, same
    yield f"{p}.not_a_point_embed.weight", enc.not_a_point_embed.embeddings, same
    yield f"{p}.no_mask_embed.weight", enc.no_mask_embed.embeddings, same
    conv0, norm1, _, conv3, norm4, _, conv6 = enc.mask_downscaler.layers
    for idx, layer in ((0, conv0), (3, conv3), (6, conv6)):
        yield f"{p}.mask_downscaling.{idx}.weight", layer.kernel, conv
        yield f"{p}.mask_downscaling.{idx}.bias", layer.bias, same
    yield from norm_pairs(norm1, f"{p}.mask_downscaling.1")
    yield from norm_pairs(norm4, f"{p}.mask_downscaling.4")


def _mask_decoder_pairs(dec: Any) -> Iterator[tuple[str, Any, Any]]:
    p = "mask_decoder"
    t = dec.transformer
    for i, layer in enumerate(t.layers):
        lp = f"{p}.transformer.layers.{i}"
        yield from _attention_pairs(layer.self_attention, f"{lp}.self_attn")
        yield from norm_pairs(layer.layer_norm1, f"{lp}.norm1")
        yield from _attention_pairs(
            layer.cross_attention_token_to_image, f"{lp}.cross_attn_token_to_image"
        )
        yield from norm_pairs(layer.layer_norm2, f"{lp}.norm2")
        lin1, lin2 = mlp_dense_layers(layer.mlp_block)
        yield from dense_pairs(lin1, f"{lp}.mlp.lin1")
        yield from dense_pairs(lin2, f"{lp}.mlp.lin2")
        yield from norm_pairs(layer.layer_norm3, f"{lp}.norm3")
        yield from _attention_pairs(
            layer.cross_attention_image_to_token, f"{lp}.cross_attn_image_to_token"
        )
        yield from norm_pairs(layer.layer_norm4, f"{lp}.norm4")
    yield from _attention_pairs(
        t.final_attention_token_to_image, f"{p}.transformer.final_attn_token_to_image"
    )
    yield from norm_pairs(t.final_layer_norm, f"{p}.transformer.norm_final_attn")
    yield f"{p}.iou_token.weight", dec.iou_token.embeddings, same
    yield f"{p}.mask_tokens.weight", dec.mask_tokens.embeddings, same
    up0, norm1, _, up3, _ = dec.output_upscaling.layers
    for idx, layer in ((0, up0), (3, up3)):
        yield f"{p}.output_upscaling.{idx}.weight", layer.kernel, conv_transpose
        yield f"{p}.output_upscaling.{idx}.bias", layer.bias, same
    yield from norm_pairs(norm1, f"{p}.output_upscaling.1")
    for i, mlp in enumerate(dec.output_hypernetworks_mlps):
        for j, dense in enumerate(mlp_dense_layers(mlp)):
            yield from dense_pairs(dense, f"{p}.output_hypernetworks_mlps.{i}.layers.{j}")
    for j, dense in enumerate(mlp_dense_layers(dec.iou_prediction_head)):
        yield from dense_pairs(dense, f"{p}.iou_prediction_head.layers.{j}")


def weight_pairs(model: Any) -> Iterator[tuple[str, Any, Any]]:
    """(official tensor name, Keras variable, layout transform) for every weight of ``model``."""
    yield from component_weight_pairs(model.backbone, model.prompt_encoder, model.mask_decoder)


def component_weight_pairs(
    image_encoder: Any, prompt_encoder: Any, mask_decoder: Any
) -> Iterator[tuple[str, Any, Any]]:
    """The same for the three parts of a SAM; keras-hub's parts share keras-cv's layout."""
    from .encoder_families import family_of_backbone

    yield from family_of_backbone(image_encoder).weight_pairs(image_encoder)
    yield from _prompt_encoder_pairs(prompt_encoder)
    yield from _mask_decoder_pairs(mask_decoder)


def assign_state_dict(model: Any, sd: Mapping[str, np.ndarray]) -> None:
    """Copy an official state dict into a keras-cv ``SegmentAnythingModel`` of the same shape.

    Every tensor must map to exactly one variable and every variable must be
    filled, so a partial or mismatched checkpoint fails loudly.
    """
    used: set[str] = set()
    filled: set[int] = set()
    for name, variable, transform in weight_pairs(model):
        if name not in sd:
            raise ModelLoadError(f"Checkpoint lacks tensor {name!r}.")
        value = transform(np.asarray(sd[name], dtype=np.float32))
        if tuple(value.shape) != tuple(variable.shape):
            raise ModelLoadError(
                f"Tensor {name!r} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(variable.shape)}."
            )
        variable.assign(value)
        used.add(name)
        filled.add(id(variable))
    from .encoder_families import family_of_backbone

    ignored = family_of_backbone(model.backbone).ignored_tensor
    unused = sorted(k for k in set(sd) - used if not ignored(k))
    if unused:
        raise ModelLoadError(f"Checkpoint has tensors SAM does not use: {unused[:5]}...")
    unfilled = [v.path for v in model.weights if id(v) not in filled]
    if unfilled:
        raise ModelLoadError(f"Variables left without weights: {unfilled[:5]}")
