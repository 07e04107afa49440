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
    if network.config.encoder != "vit":
        raise TrainingSettingsError(
            "LoRA fine-tuning supports SAM's ViT image encoder; this model has a "
            f"{network.config.encoder} encoder: use mode='decoder' or 'full'."
        )
    for layer in network.model.backbone.layers:
        if type(layer).__name__ == "WindowedTransformerEncoder":
            yield layer.attention.qkv
            yield layer.attention.projection


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
