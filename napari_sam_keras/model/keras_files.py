"""Keras files a SAM is read from and written to: preset folders (``config.json`` +
``model.weights.h5``, as keras-cv writes them), ``.keras`` archives, ``.weights.h5`` files with
their architecture beside them; :func:`save_preset`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..files.atomic_write import OutputExistsError
from .config import SAMConfig
from .model_folder import with_folder_decoder
from .model_source import config_beside
from .network import SAMNetwork, build_keras_cv_sam, config_from_serialized
from .quantization import require_float_encoder
from .weights_cache import file_sha256


def build_with_weights(config: SAMConfig, weights_path: Path) -> Any:
    """A keras-cv ``SegmentAnythingModel`` of ``config`` with the weights of ``weights_path``."""
    # keras-cv's SAM does not deserialize under Keras 3.15 (its layers add weights after
    # being built), so the architecture is rebuilt here and the weights loaded into it.
    model = build_keras_cv_sam(config)
    try:
        model.load_weights(weights_path)
    except Exception as err:
        raise ModelLoadError(
            f"Could not read weights from {weights_path.name} for this architecture: {err}"
        ) from err
    return model


def save_preset(network: SAMNetwork, directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a network as a Keras preset directory that :func:`load_model` reads offline.

    The preset is written into a temporary folder beside ``directory`` and
    renamed when complete, so an interruption never leaves half a preset.  An
    existing ``directory`` is replaced only with ``overwrite=True``.
    """
    from .preset_files import save_to_preset

    require_float_encoder(network, "save")
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise OutputExistsError(
            f"{directory} exists: choose another folder, or pass overwrite=True to replace it."
        )
    if directory.exists() and not directory.is_dir():
        raise OutputExistsError(f"{directory} is a file, not a folder.")
    if not directory.parent.is_dir():
        raise ModelLoadError(f"The folder {directory.parent} does not exist.")
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial", dir=directory.parent)
    )
    try:
        save_to_preset(network.model, tmp)
        if directory.exists():  # overwrite: move the old preset aside, then remove it
            old = Path(
                tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent)
            )
            os.replace(directory, old / directory.name)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_preset_dir(path: Path) -> SAMNetwork:
    """A Keras preset folder, or a model folder of ``save_model`` (with its decoder)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"{path} is a directory but not a Keras preset: it has no config.json."
        )
    try:
        serialized = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not read {config_file}: {err}") from err
    if not isinstance(serialized, dict):
        raise ModelLoadError(f"{config_file} does not describe a Keras model.")
    weights = path / (serialized.get("weights") or "model.weights.h5")
    if not weights.is_file():
        raise ModelLoadError(f"The preset in {path} has no weights file {weights.name}.")
    model = build_with_weights(config_from_serialized(serialized), weights)
    network = SAMNetwork.from_keras_cv(model, name=str(path), key=weights_key(weights))
    return with_folder_decoder(network, path)


def load_keras_file(path: Path) -> SAMNetwork:
    """A ``.keras`` archive of a keras-cv ``SegmentAnythingModel``."""
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path.name} is not a valid .keras file (not a zip archive).")
    try:
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
            names = set(archive.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise ModelLoadError(f"{path.name} is not a complete .keras file.")
            try:
                serialized = json.loads(archive.read("config.json"))
            except ValueError as err:  # JSON and text decoding errors
                raise ModelLoadError(
                    f"{path.name} is not a valid .keras file: its config.json is not valid "
                    f"JSON ({err})."
                ) from err
            if not isinstance(serialized, dict):
                raise ModelLoadError(f"{path.name} is not a valid .keras file (bad config.json).")
            if "SegmentAnythingModel" not in str(serialized.get("class_name", "")):
                raise ModelLoadError(
                    f"{path.name} holds a {serialized.get('class_name')}, not a SAM model."
                )
            weights = Path(archive.extract("model.weights.h5", tmp))
            model = build_with_weights(config_from_serialized(serialized), weights)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise ModelLoadError(f"{path.name} is not a valid .keras file (damaged: {err}).") from err
    return SAMNetwork.from_keras_cv(model, name=str(path), key=weights_key(path))


def load_weights_file(path: Path, config: SAMConfig | None) -> SAMNetwork:
    """A ``.weights.h5`` file with ``config``, or the ``<name>.json`` beside it."""
    if config is None:  # resolve_model made sure that it is there
        config = _read_config(config_beside(path))
    model = build_with_weights(config, path)
    return SAMNetwork(model=model, config=config, name=str(path), key=weights_key(path))


def _read_config(path: Path) -> SAMConfig:
    try:
        return SAMConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(f"Could not read the SAM config {path.name}: {err}") from err


def weights_key(path: Path) -> str:
    """A network's key from its weights file's content (its path when it is no file)."""
    return "sha256:" + file_sha256(path)[:24] if path.is_file() else f"path:{path}"
