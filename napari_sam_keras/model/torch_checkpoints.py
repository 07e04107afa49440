"""Official and micro-sam PyTorch checkpoints: read safely (torch is needed once),
converted to Keras and cached by content hash, so later loads need no torch."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .checkpoint_conversion import assign_state_dict, config_from_state_dict, unwrap_state_dict
from .config import SAMConfig
from .decoder_conversion import (
    MISSING,
    cache_decoder,
    decoder_from_state_dict,
    decoder_state_dict,
    load_cached_decoder,
    load_decoder_file,
)
from .keras_files import build_with_weights
from .network import SAMNetwork, build_keras_cv_sam
from .weights_cache import (
    discard_converted,
    file_sha256,
    model_checksum,
    read_converted,
    store_converted,
)


def read_torch_checkpoint(path: Path) -> dict:
    """Read an official ``.pth`` into a dict of numpy arrays (needs torch)."""
    return unwrap_state_dict(read_torch_file(path))


def read_torch_file(path: Path) -> Any:
    """``torch.load`` a checkpoint safely (tensors and plain containers only; needs torch)."""
    try:
        import torch
    except ImportError as err:
        raise ModelLoadError(
            f"Converting {path.name} needs PyTorch once (CPU is enough): "
            "pip install 'napari-sam-keras[torch]'. Later loads use the converted cache."
        ) from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"Could not read {path.name} as a PyTorch checkpoint ({type(err).__name__}): "
            "the file is damaged or not a checkpoint, or it holds more than weights (a "
            "training checkpoint: export it with micro_sam.util.export_custom_sam_model)."
        ) from err
    return obj


def load_official_checkpoint(path: Path) -> SAMNetwork:
    """The network of an official (or micro-sam) checkpoint: from the converted-weights cache
    when its entry is whole, else converted now (needs torch) and cached."""
    digest = file_sha256(path)
    key = "sha256:" + digest[:24]
    cached = read_converted(digest)
    decoder = load_cached_decoder(digest) if cached is not None else MISSING
    if cached is not None and decoder is not MISSING:
        weights_path, config_dict, checksum = cached
        try:
            config = SAMConfig.from_dict(config_dict)
            model = build_with_weights(config, weights_path)
            if model_checksum(model) == checksum:
                return SAMNetwork(
                    model=model, config=config, name=str(path), key=key, instance_decoder=decoder
                )
            reason = "its weights do not match their checksum"
        except (ModelLoadError, TypeError, ValueError) as err:
            reason = str(err)
        warnings.warn(
            f"The cached conversion of {path.name} ({weights_path}) is damaged ({reason}); "
            "converting the checkpoint again.",
            stacklevel=3,
        )
        discard_converted(digest)
    obj = read_torch_file(path)
    state_dict = unwrap_state_dict(obj)
    decoder = None
    if isinstance(obj, dict) and "decoder_state" in obj:
        decoder = decoder_from_state_dict(decoder_state_dict(obj, path.name), key=key)
    config = config_from_state_dict(state_dict)
    model = build_keras_cv_sam(config)
    assign_state_dict(model, state_dict)
    store_converted(digest, config.to_dict(), model_checksum(model), model.save_weights)
    cache_decoder(digest, decoder)
    return SAMNetwork(model=model, config=config, name=str(path), key=key, instance_decoder=decoder)


def load_decoder(path: Path):
    """A micro-sam instance decoder file (``*_decoder.pt``), converted once and cached."""
    if not path.is_file():
        raise ModelLoadError(f"Decoder file {str(path)!r} not found.")
    return load_decoder_file(path, file_sha256(path), read_torch_file)
