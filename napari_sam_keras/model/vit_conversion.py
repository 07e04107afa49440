"""Official SAM checkpoints: the ViT image encoder's tensors (SAM's ViT-B/L/H).

:func:`vit_config_fields` reads the encoder's architecture from the shapes of
an official state dict's ``image_encoder.*`` tensors; :func:`vit_weight_pairs`
names every variable of our ViTDet backbone
(:mod:`napari_sam_keras.keras_layers.vit_det`, keras-cv's layout) by its
official tensor name.  Declared as an encoder family in
:mod:`napari_sam_keras.model.encoder_families`; only numpy is needed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .torch_weights import (
    WeightPair,
    conv,
    dense_pairs,
    layers_of_type,
    mlp_dense_layers,
    norm_pairs,
    same,
)

#: The first tensor of SAM's ViT (its patch embedding).
VIT_MARKER = "image_encoder.patch_embed.proj.weight"

_BLOCK = re.compile(r"image_encoder\.blocks\.(\d+)\.")


def vit_config_fields(sd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The :class:`~napari_sam_keras.model.config.SAMConfig` encoder fields of a ViT,
    read from an official state dict's tensor shapes."""
    for name in (VIT_MARKER, "image_encoder.pos_embed"):
        if name not in sd:
            raise ModelLoadError(f"Not a complete SAM checkpoint; missing tensor {name!r}.")
    embed_dim, _, patch, _ = sd[VIT_MARKER].shape
    grid = sd["image_encoder.pos_embed"].shape[1]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK.match(k)))
    head_dim = sd["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
    global_idx = tuple(
        i
        for i in range(depth)
        if sd[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] == 2 * grid - 1
    )
    windowed = [i for i in range(depth) if i not in global_idx]
    window = (
        (sd[f"image_encoder.blocks.{windowed[0]}.attn.rel_pos_h"].shape[0] + 1) // 2
        if windowed
        else 14
    )
    mlp_dim = sd["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]
    return dict(
        image_size=int(grid * patch),
        patch_size=int(patch),
        encoder_embed_dim=int(embed_dim),
        encoder_depth=int(depth),
        encoder_num_heads=int(embed_dim // head_dim),
        encoder_global_attn_indexes=global_idx,
        encoder_mlp_ratio=mlp_dim / embed_dim,
        window_size=int(window),
    )


def vit_fields_from_serialized(backbone: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ViT encoder fields from a serialized keras-cv ``ViTDetBackbone`` config, or None
    if the backbone is not one."""
    if not isinstance(backbone, Mapping) or "global_attention_indices" not in backbone:
        return None
    return dict(
        image_size=int(backbone["input_shape"][0]),
        patch_size=int(backbone["patch_size"]),
        encoder_embed_dim=int(backbone["embed_dim"]),
        encoder_depth=int(backbone["depth"]),
        encoder_num_heads=int(backbone["num_heads"]),
        encoder_global_attn_indexes=tuple(backbone["global_attention_indices"]),
        encoder_mlp_ratio=backbone["mlp_dim"] / backbone["embed_dim"],
        window_size=int(backbone["window_size"]),
    )


def is_vit_backbone(backbone: Any) -> bool:
    """Whether a Keras backbone is SAM's ViT (ours or keras-cv's / keras-hub's)."""
    return bool(layers_of_type(backbone.layers, "ViTDetPatchingAndEmbedding"))


def build_vit_backbone(config: Any) -> Any:
    """Our ViTDet backbone (keras-cv's layout) for ``config``, random weights."""
    from ..keras_layers.vit_det import ViTDetBackbone

    return ViTDetBackbone(
        include_rescaling=True,
        input_shape=(config.image_size, config.image_size, 3),
        patch_size=config.patch_size,
        embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth,
        mlp_dim=config.encoder_mlp_dim,
        num_heads=config.encoder_num_heads,
        out_chans=config.prompt_embed_dim,
        use_bias=True,
        use_abs_pos=True,
        use_rel_pos=True,
        window_size=config.window_size,
        global_attention_indices=list(config.encoder_global_attn_indexes),
        layer_norm_epsilon=1e-6,
    )


def vit_image_encoder_model(backbone: Any, config: Any) -> Any:
    """The ViT as a Keras model image -> embedding, with chunked global attention."""
    from ..keras_layers.vit_encoder import backbone_forward

    return backbone_forward(backbone, config)


def vit_lora_projections(backbone: Any) -> Iterator[Any]:
    """The attention projections (qkv, output) of every block: LoRA's targets."""
    for layer in layers_of_type(backbone.layers, "WindowedTransformerEncoder"):
        yield layer.attention.qkv
        yield layer.attention.projection


def vit_weight_pairs(backbone: Any) -> Iterator[WeightPair]:
    """(official tensor name, Keras variable, layout transform) for every variable of the
    ViT in ``backbone``."""
    layers = backbone.layers
    (patch,) = layers_of_type(layers, "ViTDetPatchingAndEmbedding")
    yield VIT_MARKER, patch.projection.kernel, conv
    yield "image_encoder.patch_embed.proj.bias", patch.projection.bias, same
    (pos,) = layers_of_type(layers, "AddPositionalEmbedding")
    yield "image_encoder.pos_embed", pos.pos_embed, same
    for i, block in enumerate(layers_of_type(layers, "WindowedTransformerEncoder")):
        p = f"image_encoder.blocks.{i}"
        yield from norm_pairs(block.layer_norm1, f"{p}.norm1")
        yield from dense_pairs(block.attention.qkv, f"{p}.attn.qkv")
        yield from dense_pairs(block.attention.projection, f"{p}.attn.proj")
        attn = block.attention
        # keras-cv spells it "reative", keras-hub "relative"
        rel = getattr(attn, "add_decomposed_reative_pe", None) or attn.add_decomposed_relative_pe
        yield f"{p}.attn.rel_pos_h", rel.rel_pos_h, same
        yield f"{p}.attn.rel_pos_w", rel.rel_pos_w, same
        yield from norm_pairs(block.layer_norm2, f"{p}.norm2")
        lin1, lin2 = mlp_dense_layers(block.mlp_block)
        yield from dense_pairs(lin1, f"{p}.mlp.lin1")
        yield from dense_pairs(lin2, f"{p}.mlp.lin2")
    (neck,) = layers_of_type(layers, "Sequential")
    conv1, norm1, conv2, norm2 = neck.layers
    yield "image_encoder.neck.0.weight", conv1.kernel, conv
    yield from norm_pairs(norm1, "image_encoder.neck.1")
    yield "image_encoder.neck.2.weight", conv2.kernel, conv
    yield from norm_pairs(norm2, "image_encoder.neck.3")
