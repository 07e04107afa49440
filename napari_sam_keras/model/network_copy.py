"""A plain copy of a network: its own weights, LoRA adapters merged into the kernels.

Fine-tuning trains a copy (the caller's network stays as it was), and a
network whose encoder carries LoRA adapters is saved and exported as such a
merged copy: every weight is read through its layer (a LoRA-enabled layer's
``kernel`` is ``kernel + a @ b * alpha / rank``), so the copy computes what
the adapted network computes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..runtime.backend import import_keras
from .checkpoint_conversion import weight_pairs
from .decoder_conversion import InstanceDecoder, build_instance_decoder
from .network import SAMNetwork, build_keras_cv_sam


def _numpy(value: Any) -> np.ndarray:
    return np.asarray(import_keras().ops.convert_to_numpy(value), np.float32)


def copy_decoder(decoder: InstanceDecoder | None) -> InstanceDecoder | None:
    """An independent copy of an instance decoder (``None`` stays ``None``)."""
    if decoder is None:
        return None
    model = build_instance_decoder(decoder.config)
    model.set_weights(decoder.model.get_weights())
    return InstanceDecoder(model=model, config=decoder.config, key=decoder.key)


def copy_network(network: SAMNetwork, name: str | None = None, key: str = "") -> SAMNetwork:
    """A new network with the same architecture and (merged) weights as ``network``.

    Weights are paired by their official tensor names, so a copy never mixes
    up variables; its instance decoder is copied too.
    """
    model = build_keras_cv_sam(network.config)
    ours = list(weight_pairs(model))
    theirs = list(weight_pairs(network.model))
    for (name_a, dst, _), (name_b, src, _) in zip(ours, theirs, strict=True):
        if name_a != name_b:  # pragma: no cover - same architecture, same walk
            raise RuntimeError(f"weight order differs: {name_a} vs {name_b}")
        dst.assign(_numpy(src))
    return SAMNetwork(
        model=model,
        config=network.config,
        name=name or network.name,
        key=key,
        instance_decoder=copy_decoder(network.instance_decoder),
        generator_defaults=dict(network.generator_defaults),
    )
