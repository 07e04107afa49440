"""A fine-tuned model as a folder: Keras config + weights, the instance decoder, what it
was trained on.

The folder is a Keras preset directory (``config.json`` + ``model.weights.h5``,
what :func:`~napari_sam_keras.load_model` reads) plus, when the network has
an instance decoder, ``instance_decoder.json`` (its architecture) and
``instance_decoder.weights.h5``, and ``training.json`` (the base model, the
settings, the validation figures before and after).  Keras' ``metadata.json`` may
hold, under ``generator_settings``, the automatic mask generator's settings the
model recommends (the shipped demo model does; a saved copy keeps them).  It is written into a
temporary folder beside the target and renamed when complete
(:func:`~napari_sam_keras.files.atomic_write.atomic_directory`).  LoRA
adapters are merged into the kernels first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..files.atomic_write import OutputExistsError, atomic_directory
from .network import SAMNetwork
from .quantization import require_float_encoder

DECODER_CONFIG = "instance_decoder.json"
DECODER_WEIGHTS = "instance_decoder.weights.h5"
TRAINING_INFO = "training.json"
METADATA = "metadata.json"
#: The key of ``metadata.json`` holding a model's own automatic-generator defaults.
GENERATOR_SETTINGS_KEY = "generator_settings"


def save_model(
    network: Any,
    path: str | os.PathLike,
    *,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a network (e.g. :func:`~napari_sam_keras.finetune`'s ``result.model``) as a model
    folder that :func:`~napari_sam_keras.load_model` reads.

    Args:
        network: a :class:`~napari_sam_keras.SAMNetwork` or a
            :class:`~napari_sam_keras.training.finetune.FineTuneResult` (whose
            ``training`` record is then saved too).
        path: the folder to create.
        training: what it was trained on (JSON-serialisable); default the
            result's record, if any.
        overwrite: replace an existing folder (otherwise an existing ``path``
            is an error and nothing is written).
    """
    from keras_cv.src.utils.preset_utils import save_to_preset

    from .as_network import as_network
    from .network_copy import copy_network

    if hasattr(network, "model") and hasattr(network, "history"):  # a FineTuneResult
        training = network.training if training is None else training
        network = network.model
    network = as_network(network)  # anything else: one clear NotAModelError
    require_float_encoder(network, "save")
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} exists: choose another folder, or pass overwrite=True to replace it."
        )
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} is a file, not a folder.")
    if not path.parent.is_dir():
        raise ModelLoadError(f"The folder {path.parent} does not exist.")
    text = json.dumps(training or {}, indent=1, default=_plain)
    plain = copy_network(network)  # LoRA merged, no training state
    with atomic_directory(path) as tmp:
        save_to_preset(plain.model, str(tmp))
        decoder = plain.instance_decoder
        if decoder is not None:
            (tmp / DECODER_CONFIG).write_text(decoder.config.to_json())
            decoder.model.save_weights(tmp / DECODER_WEIGHTS)
        (tmp / TRAINING_INFO).write_text(text)
        if plain.generator_defaults:
            metadata_file = tmp / METADATA
            metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
            metadata[GENERATOR_SETTINGS_KEY] = plain.generator_defaults
            metadata_file.write_text(json.dumps(metadata, indent=4))
    return path


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def load_folder_decoder(path: Path, key: str) -> Any:
    """The instance decoder saved in a model folder, or None when it has none."""
    config_file = path / DECODER_CONFIG
    if not config_file.is_file():
        return None
    from .decoder_conversion import DecoderConfig, InstanceDecoder, build_instance_decoder

    try:
        config = DecoderConfig.from_dict(json.loads(config_file.read_text()))
        model = build_instance_decoder(config)
        model.load_weights(path / DECODER_WEIGHTS)
    except Exception as err:
        raise ModelLoadError(f"Could not read the instance decoder in {path}: {err}") from err
    return InstanceDecoder(model=model, config=config, key=key)


def training_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``training.json`` of a model folder (what it was trained on), or None."""
    info = Path(path) / TRAINING_INFO
    if not info.is_file():
        return None
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None


def folder_generator_defaults(path: Path) -> dict[str, Any]:
    """The automatic-generator settings a model folder recommends (``metadata.json``'s
    ``generator_settings``), or ``{}``; checked when used."""
    metadata_file = Path(path) / METADATA
    if not metadata_file.is_file():
        return {}
    try:
        values = json.loads(metadata_file.read_text()).get(GENERATOR_SETTINGS_KEY) or {}
    except (OSError, ValueError, AttributeError) as err:
        raise ModelLoadError(f"Could not read {metadata_file}: {err}") from err
    if not isinstance(values, dict):
        raise ModelLoadError(
            f"{metadata_file}: {GENERATOR_SETTINGS_KEY!r} must map setting names to numbers."
        )
    return dict(values)


def with_folder_decoder(network: SAMNetwork, path: Path) -> SAMNetwork:
    """``network`` loaded from the preset folder ``path``, with the folder's decoder if any
    and the generator settings it recommends."""
    decoder = load_folder_decoder(path, key=network.key + ":decoder")
    if decoder is not None:
        network.instance_decoder = decoder
    network.generator_defaults = folder_generator_defaults(path)
    return network
