"""The image-encoder families, declared in one place.

An :class:`EncoderFamily` says everything the rest of the package needs about
one kind of image encoder: how to build it, how to recognise it in an official
PyTorch state dict (its marker tensor) and read its architecture from the
tensor shapes, how each Keras variable is named there, how to read its
architecture back from a serialized Keras model, how to check a config, and
what it supports (LoRA adapters, export to micro-sam).  ``SAMConfig.encoder``
names the family.  A new encoder family is one more entry in
:data:`ENCODER_FAMILIES`; nothing else switches on the name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SAMError


def _no_check(config: Any) -> None:
    return None


def _nothing_ignored(name: str) -> bool:
    return False


@dataclass(frozen=True)
class EncoderFamily:
    """One kind of SAM image encoder.

    Attributes:
        name: the ``SAMConfig.encoder`` value.
        description: for messages ("SAM's ViT", "MobileSAM's TinyViT").
        marker: a tensor name only this family's official state dicts have.
        config_fields: state dict -> the ``SAMConfig`` encoder fields.
        fields_from_serialized: a serialized Keras backbone config -> the same fields,
            or None when the backbone is not of this family.
        is_backbone: whether a built Keras backbone is of this family.
        weight_pairs: backbone -> (official tensor name, Keras variable, transform).
        build_backbone: config -> a Keras backbone with random weights.
        image_encoder_model: (backbone, config) -> Keras model image -> embedding.
        check_config: raises ``SAMError`` for an impossible config of this family.
        ignored_tensor: official tensors the SAM network does not use.
        lora_projections: backbone -> the layers LoRA adapts; None: no LoRA.
        micro_sam_export: whether :func:`~napari_sam_keras.export_micro_sam` supports it.
        label: a short name for a randomly initialised network of this config.
    """

    name: str
    description: str
    marker: str
    config_fields: Callable[[Mapping[str, Any]], dict[str, Any]]
    fields_from_serialized: Callable[[Mapping[str, Any]], dict[str, Any] | None]
    is_backbone: Callable[[Any], bool]
    weight_pairs: Callable[[Any], Iterator[tuple[str, Any, Any]]]
    build_backbone: Callable[[Any], Any]
    image_encoder_model: Callable[[Any, Any], Any]
    label: Callable[[Any], str]
    check_config: Callable[[Any], None] = _no_check
    ignored_tensor: Callable[[str], bool] = _nothing_ignored
    lora_projections: Callable[[Any], Iterator[Any]] | None = None
    micro_sam_export: bool = False


def _vit() -> EncoderFamily:
    from . import vit_conversion as v

    def check(config: Any) -> None:
        if config.encoder_embed_dim % config.encoder_num_heads:
            raise SAMError("encoder_embed_dim must be divisible by encoder_num_heads")

    return EncoderFamily(
        name="vit",
        description="SAM's ViT",
        marker=v.VIT_MARKER,
        config_fields=v.vit_config_fields,
        fields_from_serialized=v.vit_fields_from_serialized,
        is_backbone=v.is_vit_backbone,
        weight_pairs=v.vit_weight_pairs,
        build_backbone=v.build_vit_backbone,
        image_encoder_model=v.vit_image_encoder_model,
        label=lambda config: f"{config.encoder_embed_dim}d",
        check_config=check,
        lora_projections=v.vit_lora_projections,
        micro_sam_export=True,
    )


def _tiny_vit() -> EncoderFamily:
    from . import tiny_vit_conversion as t

    def build(config: Any) -> Any:
        from ..keras_layers.tiny_vit import tiny_vit_backbone

        return tiny_vit_backbone(config)

    return EncoderFamily(
        name="tiny_vit",
        description="MobileSAM's TinyViT",
        marker=t.TINY_VIT_MARKER,
        config_fields=t.tiny_vit_config_fields,
        fields_from_serialized=t.tiny_vit_fields_from_serialized,
        is_backbone=t.is_tiny_vit_backbone,
        weight_pairs=t.tiny_vit_weight_pairs,
        build_backbone=build,
        image_encoder_model=lambda backbone, config: backbone,
        label=lambda config: "tiny_vit",
        check_config=t.check_tiny_vit_config,
        ignored_tensor=t.ignored_tensor,
    )


#: Every encoder family by ``SAMConfig.encoder`` name (built when first asked for); the
#: first is the default.
_FACTORIES: dict[str, Callable[[], EncoderFamily]] = {"vit": _vit, "tiny_vit": _tiny_vit}
ENCODER_NAMES = tuple(_FACTORIES)
_FAMILIES: dict[str, EncoderFamily] = {}


def encoder_family(name: str) -> EncoderFamily:
    """The family called ``name``; ``SAMError`` for an unknown one."""
    if name not in _FAMILIES:
        if name not in _FACTORIES:
            raise SAMError(f"Unknown encoder {name!r}; use one of {ENCODER_NAMES}")
        _FAMILIES[name] = _FACTORIES[name]()
    return _FAMILIES[name]


def encoder_families() -> list[EncoderFamily]:
    """All families, the default first."""
    return [encoder_family(name) for name in ENCODER_NAMES]


def family_of_state_dict(sd: Mapping[str, Any]) -> EncoderFamily | None:
    """The family whose marker tensor an (unwrapped) official state dict holds."""
    return next((f for f in encoder_families() if f.marker in sd), None)


def family_of_backbone(backbone: Any) -> EncoderFamily:
    """The family of a built Keras backbone (ours, keras-cv's or keras-hub's)."""
    for family in encoder_families():
        if family.is_backbone(backbone):
            return family
    raise SAMError(f"Unknown image encoder {type(backbone).__name__}.")
