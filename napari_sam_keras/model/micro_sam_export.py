"""Export a network to micro-sam's checkpoint layout (and so to the official SAM).

The file holds ``{"model_state": {"sam.<official name>": tensor, ...},
"decoder_state": {<torch-em UNETR name>: tensor, ...}}``, the layout of
micro-sam's training checkpoints: ``micro_sam.util.get_sam_model`` reads
the SAM part (it strips the ``sam.`` prefix), and the decoder state is what
its instance segmentation loads.  The official ``segment_anything`` ``Sam``
loads ``model_state`` without the prefix with ``strict=True``.

It inverts the layout transforms of the import
(:mod:`~napari_sam_keras.model.checkpoint_conversion`,
:mod:`~napari_sam_keras.model.decoder_conversion`): the same walk names every
Keras variable by its official tensor; LoRA adapters are merged (each weight
is read through its layer).  Writing needs torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..files.atomic_write import OutputExistsError, atomic_write
from ..runtime.backend import import_keras
from .quantization import require_float_encoder
from .torch_weights import to_torch_layout

SAM_PREFIX = "sam."


def sam_state_dict(network: Any) -> dict[str, np.ndarray]:
    """The network's weights as an official SAM state dict (numpy, PyTorch layouts)."""
    from .checkpoint_conversion import weight_pairs
    from .encoder_families import encoder_family

    family = encoder_family(network.config.encoder)
    if not family.micro_sam_export:
        raise ModelLoadError(f"Export to micro-sam does not support {family.description} yet.")
    ops = import_keras().ops
    state = {}
    for name, variable, transform in weight_pairs(network.model):
        value = np.asarray(ops.convert_to_numpy(variable), np.float32)
        state[name] = np.ascontiguousarray(to_torch_layout(transform, value))
    return state


def decoder_state_dict_of(decoder: Any) -> dict[str, np.ndarray]:
    """An instance decoder's weights as a torch-em UNETR decoder state dict."""
    from .decoder_conversion import decoder_weight_pairs

    ops = import_keras().ops
    state = {}
    for name, variable, transform in decoder_weight_pairs(decoder.model):
        value = np.asarray(ops.convert_to_numpy(variable), np.float32)
        state[name] = np.ascontiguousarray(to_torch_layout(transform, value))
        if name.endswith(".running_var"):
            state[name[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return state


def export_micro_sam(network: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``network`` (and its instance decoder) as a micro-sam checkpoint (``.pt``).

    ``network`` may also be a ``FineTuneResult``.  The file is written
    atomically; an existing file is replaced only with ``overwrite=True``.
    """
    if hasattr(network, "model") and hasattr(network, "history"):
        network = network.model
    from .as_network import as_network

    network = as_network(network)  # anything else: one clear NotAModelError
    require_float_encoder(network, "export")
    try:
        import torch
    except ImportError as err:
        raise ModelLoadError(
            "Exporting to micro-sam writes a PyTorch file: pip install torch (CPU is enough)."
        ) from err
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} exists: choose another name, or pass overwrite=True to replace it."
        )
    checkpoint: dict[str, Any] = {
        "model_state": {
            SAM_PREFIX + k: torch.from_numpy(v) for k, v in sam_state_dict(network).items()
        }
    }
    if network.instance_decoder is not None:
        checkpoint["decoder_state"] = {
            k: torch.from_numpy(np.asarray(v))
            for k, v in decoder_state_dict_of(network.instance_decoder).items()
        }
    with atomic_write(path) as tmp:
        torch.save(checkpoint, tmp)
    return path
