"""MobileSAM checkpoints: the TinyViT image encoder's tensors.

A MobileSAM state dict (``mobile_sam.pt``, micro-sam's ``vit_t_*``) holds
SAM's usual ``prompt_encoder.*`` and ``mask_decoder.*`` tensors and, under
``image_encoder.*``, TinyViT's.  :func:`tiny_vit_config_fields` reads the
encoder's architecture from their shapes; :func:`tiny_vit_weight_pairs` names
every variable of our :class:`~napari_sam_keras.keras_layers.tiny_vit.TinyViTEncoder`
by its MobileSAM tensor name.  Declared as an encoder family in
:mod:`napari_sam_keras.model.encoder_families`; only numpy is needed here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import ModelLoadError, SAMError
from .torch_weights import (
    WeightPair,
    conv,
    dense_pairs,
    depthwise,
    layers_of_type,
    norm_pairs,
    same,
)

#: A tensor only TinyViT checkpoints have (the first conv of the stem).
TINY_VIT_MARKER = "image_encoder.patch_embed.seq.0.c.weight"

#: Tensors of a MobileSAM checkpoint that the SAM network does not use: TinyViT's
#: ImageNet classification head and BatchNorm's update counters.
_IGNORED = re.compile(r"^image_encoder\.(head|norm_head)\.|\.num_batches_tracked$")

_BLOCK = re.compile(r"^image_encoder\.layers\.(\d+)\.blocks\.(\d+)\.")

#: Stage 0 is convolutional: no tensor fixes its heads and window, so a checkpoint gets
#: MobileSAM's (the defaults of ``SAMConfig.tiny_vit_num_heads`` / ``_window_sizes``).
STAGE0_HEADS, STAGE0_WINDOW = 2, 7

#: MobileSAM's image size: its encoder reshapes to a 64 x 64 map, so it is fixed.
MOBILE_SAM_IMAGE_SIZE = 1024


def is_tiny_vit_backbone(backbone: Any) -> bool:
    """Whether a built Keras backbone holds our TinyViT encoder."""
    return bool(layers_of_type(backbone.layers, "TinyViTEncoder"))


def check_tiny_vit_config(config: Any) -> None:
    """``SAMError`` for a TinyViT config that cannot be built."""
    stages = (
        config.tiny_vit_embed_dims,
        config.tiny_vit_depths,
        config.tiny_vit_num_heads,
        config.tiny_vit_window_sizes,
    )
    if any(len(values) != 4 for values in stages):
        raise SAMError("TinyViT has four stages: give four dims, depths, heads and windows")
    if config.patch_size != 16:
        raise SAMError("TinyViT downsamples by 16: patch_size must be 16")
    for i in range(1, 4):
        if config.tiny_vit_embed_dims[i] % config.tiny_vit_num_heads[i]:
            raise SAMError(f"TinyViT stage {i}: embed dim must be divisible by its heads")
    if config.tiny_vit_embed_dims[0] % 2:
        raise SAMError("TinyViT's first embed dim must be even (the stem halves it)")


def ignored_tensor(name: str) -> bool:
    """Whether a checkpoint tensor is known to be unused (TinyViT's head, BN counters)."""
    return bool(_IGNORED.search(name))


def _shape(sd: Mapping[str, np.ndarray], name: str) -> tuple[int, ...]:
    if name not in sd:
        raise ModelLoadError(f"Not a complete MobileSAM checkpoint: it lacks tensor {name!r}.")
    return tuple(int(n) for n in np.shape(sd[name]))


def tiny_vit_config_fields(sd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The :class:`~napari_sam_keras.config.SAMConfig` fields of a TinyViT encoder,
    read from a MobileSAM state dict's tensor shapes."""
    p = "image_encoder"
    blocks: dict[int, int] = {}
    for key in sd:
        if m := _BLOCK.match(key):
            stage, block = int(m.group(1)), int(m.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    if sorted(blocks) != [0, 1, 2, 3]:
        raise ModelLoadError(
            f"This TinyViT checkpoint has blocks in stages {sorted(blocks)}; MobileSAM's has "
            "four stages (0-3)."
        )
    depths = tuple(blocks[i] for i in range(4))
    dims = [_shape(sd, f"{p}.patch_embed.seq.2.c.weight")[0]]
    heads, windows = [STAGE0_HEADS], [STAGE0_WINDOW]
    for i in range(1, 4):
        dims.append(_shape(sd, f"{p}.layers.{i}.blocks.0.attn.proj.weight")[0])
        n_heads, n_offsets = _shape(sd, f"{p}.layers.{i}.blocks.0.attn.attention_biases")
        window = math.isqrt(n_offsets)
        if window * window != n_offsets:
            raise ModelLoadError(
                f"Tensor '{p}.layers.{i}.blocks.0.attn.attention_biases' has {n_offsets} offsets, "
                "not a square window's."
            )
        heads.append(n_heads)
        windows.append(window)
    hidden = _shape(sd, f"{p}.layers.0.blocks.0.conv1.c.weight")[0]
    mlp_hidden = _shape(sd, f"{p}.layers.1.blocks.0.mlp.fc1.weight")[0]
    return {
        "image_size": MOBILE_SAM_IMAGE_SIZE,
        "patch_size": 16,
        "tiny_vit_embed_dims": tuple(dims),
        "tiny_vit_depths": depths,
        "tiny_vit_num_heads": tuple(heads),
        "tiny_vit_window_sizes": tuple(windows),
        "tiny_vit_mlp_ratio": mlp_hidden / dims[1],
        "tiny_vit_mbconv_expand_ratio": hidden / dims[0],
        "tiny_vit_local_conv_size": _shape(sd, f"{p}.layers.1.blocks.0.local_conv.c.weight")[-1],
    }


def _conv_bn_pairs(layer: Any, prefix: str) -> Iterator[WeightPair]:
    yield f"{prefix}.c.weight", layer.conv.kernel, depthwise if layer.depthwise else conv
    yield f"{prefix}.bn.weight", layer.bn.gamma, same
    yield f"{prefix}.bn.bias", layer.bn.beta, same
    yield f"{prefix}.bn.running_mean", layer.bn.moving_mean, same
    yield f"{prefix}.bn.running_var", layer.bn.moving_variance, same


def tiny_vit_weight_pairs(backbone: Any) -> Iterator[WeightPair]:
    """(MobileSAM tensor name, Keras variable, layout transform) for every variable of
    the TinyViT in ``backbone`` (a model made by ``tiny_vit_backbone``)."""
    (encoder,) = layers_of_type(backbone.layers, "TinyViTEncoder")
    p = "image_encoder"
    yield from _conv_bn_pairs(encoder.stem[0], f"{p}.patch_embed.seq.0")
    yield from _conv_bn_pairs(encoder.stem[1], f"{p}.patch_embed.seq.2")
    for i, (_, blocks) in enumerate(encoder._stages()):
        for j, block in enumerate(blocks):
            b = f"{p}.layers.{i}.blocks.{j}"
            if i == 0:
                for n in (1, 2, 3):
                    yield from _conv_bn_pairs(getattr(block, f"conv{n}"), f"{b}.conv{n}")
                continue
            attn = block.attn
            yield f"{b}.attn.attention_biases", attn.attention_biases, same
            yield from norm_pairs(attn.norm, f"{b}.attn.norm")
            yield from dense_pairs(attn.qkv, f"{b}.attn.qkv")
            yield from dense_pairs(attn.proj, f"{b}.attn.proj")
            yield from norm_pairs(block.mlp_norm, f"{b}.mlp.norm")
            yield from dense_pairs(block.fc1, f"{b}.mlp.fc1")
            yield from dense_pairs(block.fc2, f"{b}.mlp.fc2")
            yield from _conv_bn_pairs(block.local_conv, f"{b}.local_conv")
    # MobileSAM's stage i ends with the patch merging into stage i + 1
    for i, merge in enumerate(encoder.merges):
        for n in (1, 2, 3):
            yield from _conv_bn_pairs(
                getattr(merge, f"conv{n}"), f"{p}.layers.{i}.downsample.conv{n}"
            )
    yield f"{p}.neck.0.weight", encoder.neck_conv1.kernel, conv
    yield from norm_pairs(encoder.neck_norm1, f"{p}.neck.1")
    yield f"{p}.neck.2.weight", encoder.neck_conv2.kernel, conv
    yield from norm_pairs(encoder.neck_norm2, f"{p}.neck.3")


def tiny_vit_fields_from_serialized(backbone: Mapping[str, Any]) -> dict[str, Any] | None:
    """The TinyViT :class:`SAMConfig` fields from a serialized TinyViT backbone (a
    functional model's config, as in a ``.keras`` file or preset), or None if the
    backbone is not one."""
    layers = backbone.get("layers") if isinstance(backbone, Mapping) else None
    if not isinstance(layers, list):
        return None
    found = [
        layer.get("config", {})
        for layer in layers
        if isinstance(layer, Mapping) and layer.get("class_name") == "TinyViTEncoder"
    ]
    if len(found) != 1:
        return None
    cfg = found[0]
    shapes = [
        layer.get("config", {}).get("batch_shape")
        for layer in layers
        if isinstance(layer, Mapping) and layer.get("class_name") == "InputLayer"
    ]
    if len(shapes) != 1 or not shapes[0] or len(shapes[0]) != 4:
        return None
    size = shapes[0][1]
    return {
        "image_size": int(size),
        "patch_size": 16,
        "tiny_vit_embed_dims": tuple(cfg["embed_dims"]),
        "tiny_vit_depths": tuple(cfg["depths"]),
        "tiny_vit_num_heads": tuple(cfg["num_heads"]),
        "tiny_vit_window_sizes": tuple(cfg["window_sizes"]),
        "tiny_vit_mlp_ratio": float(cfg["mlp_ratio"]),
        "tiny_vit_mbconv_expand_ratio": float(cfg["mbconv_expand_ratio"]),
        "tiny_vit_local_conv_size": int(cfg["local_conv_size"]),
        "pixel_mean": tuple(cfg["pixel_mean"]),
        "pixel_std": tuple(cfg["pixel_std"]),
    }
