"""Low-rank adapters (LoRA) on the image encoder, with Keras 3's own ``enable_lora``.

The adapters go on the attention projections of every ViT block (``qkv``
and the output ``projection``, both ``Dense`` layers); the base kernels are
frozen by Keras, and every other encoder weight is frozen here, so training
changes only the adapters (and the prompt encoder, mask decoder and instance
decoder).  Saving merges them: see :mod:`napari_sam_keras.model.network_copy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import TrainingSettingsError
from ..model.network import SAMNetwork

#: Default adapter rank.
LORA_RANK = 4


def attention_projections(network: SAMNetwork) -> Iterator[Any]:
    """The encoder's attention projection layers that get adapters."""
    from ..model.encoder_families import encoder_family

    family = encoder_family(network.config.encoder)
    if family.lora_projections is None:
        raise TrainingSettingsError(
            f"LoRA fine-tuning does not support {family.description} image encoder "
            "yet: use mode='decoder' or 'full'."
        )
    yield from family.lora_projections(network.model.backbone)


def enable_lora(network: SAMNetwork, rank: int = LORA_RANK) -> list[Any]:
    """Put rank-``rank`` adapters on the encoder's attention projections; freeze the rest of
    the encoder.  Returns the adapted layers."""
    layers = list(attention_projections(network))
    for layer in layers:
        layer.enable_lora(rank)
    adapters = {id(v) for layer in layers for v in (layer.lora_kernel_a, layer.lora_kernel_b)}
    for variable in network.model.backbone.weights:
        variable.trainable = id(variable) in adapters
    return layers


def is_adapter(variable: Any) -> bool:
    """Whether a variable is a LoRA adapter matrix."""
    return "lora_kernel" in variable.path
