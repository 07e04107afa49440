"""Which model a name means: the one rule every place that names a model goes through.

:func:`resolve_model` turns what a user gives (a preset name, ``demo_nuclei``, a
file or a folder; nothing: ``$NAPARI_SAM_KERAS_MODEL`` or the default preset)
into a :class:`ModelSource`: what kind of model it is and the name recorded with
what it makes.  :func:`~napari_sam_keras.load_model`, the batch runner, the
command line and the widgets' model picker all call it, so a name one of them
accepts, the others accept too.  Nothing here imports Keras or reads weights.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError
from .config import DEFAULT_MODEL, MODEL_ENV_VAR, PRESETS, SAMConfig

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin")

#: Models shipped inside the package (Keras preset directories under ``data/``).
#: ``demo_nuclei``: a tiny SAM trained on synthetic nuclei only (scripts/train_demo_model.py).
DEMO_MODEL = "demo_nuclei"
DEMO_MODELS = {DEMO_MODEL: Path(__file__).parents[1] / "data" / DEMO_MODEL}

#: The kinds of model source, in the order :func:`resolve_model` tells them apart.
KINDS = ("preset", "demo", "preset_dir", "weights_file", "keras_file", "checkpoint")


@dataclass(frozen=True)
class ModelSource:
    """A model named by a user, resolved.

    Attributes:
        name: what outputs record and caches are keyed by: the preset or demo
            name, or the absolute path of a file or folder.
        kind: one of :data:`KINDS`.
        path: the file or folder to read (None for a preset downloaded by a hub).
    """

    name: str
    kind: str
    path: Path | None = None


def configured_model() -> str:
    """The model ``$NAPARI_SAM_KERAS_MODEL`` names, or ``""``."""
    return os.environ.get(MODEL_ENV_VAR, "").strip()


def default_model() -> str:
    """The model used when none is named: ``$NAPARI_SAM_KERAS_MODEL``, else the default preset.

    (The widgets propose the shipped demo model instead when the default preset's
    weights are not on this machine: :mod:`.model_choice`.)
    """
    return configured_model() or DEFAULT_MODEL


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PyTorch checkpoint file (micro-sam's cache names lack a suffix)."""
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        return False
    name = path.name.lower()
    return name.endswith(CHECKPOINT_SUFFIXES) or (not path.suffix and zipfile.is_zipfile(path))


def config_beside(weights: Path) -> Path:
    """Where the architecture of a ``<name>.weights.h5`` file is read from: ``<name>.json``."""
    return weights.with_name(weights.name[: -len(".weights.h5")] + ".json")


def resolve_model(
    source: str | os.PathLike | ModelSource | None = None, config: SAMConfig | None = None
) -> ModelSource:
    """What ``source`` names (see :func:`~napari_sam_keras.load_model` for the accepted forms).

    ``None`` means :func:`default_model`; an empty string is an error (an unset shell
    variable, say), not the default.  ``config`` is the architecture given with a
    ``.weights.h5`` file.  A ``.weights.h5`` without an architecture of its own inside a
    Keras preset folder (one with ``config.json``) means that folder.

    Raises:
        ModelLoadError: ``source`` is empty, names no preset and no existing file or
            folder, or is a file of a kind no loader reads.
    """
    if isinstance(source, ModelSource):
        return source
    text = default_model() if source is None else os.fspath(source)
    if not text.strip():
        raise ModelLoadError(
            "No model given (an empty path): give a preset name, a checkpoint file, a .keras "
            "file or a Keras preset directory."
        )
    if text in PRESETS and not Path(text).exists():
        return ModelSource(text, "preset")
    if text in DEMO_MODELS and not Path(text).exists():
        return ModelSource(text, "demo", DEMO_MODELS[text])
    path = Path(text).expanduser()
    if not path.exists():
        presets = ", ".join([*PRESETS, *DEMO_MODELS])
        raise ModelLoadError(
            f"Model {text!r} not found: it is neither an existing file or directory nor a "
            f"preset name ({presets})."
        )
    path = Path(os.path.abspath(path))
    if path.is_dir():
        return ModelSource(str(path), "preset_dir", path)
    name = path.name.lower()
    if name.endswith(".weights.h5"):
        if config is None and not config_beside(path).is_file():
            if (path.parent / "config.json").is_file():
                return ModelSource(str(path.parent), "preset_dir", path.parent)
            raise ModelLoadError(
                f"{path.name} holds weights only; give its architecture as load_model(..., "
                f"config=SAMConfig(...)) or put a {config_beside(path).name} beside it."
            )
        return ModelSource(str(path), "weights_file", path)
    if name.endswith(".keras"):
        return ModelSource(str(path), "keras_file", path)
    if is_checkpoint_file(path):
        return ModelSource(str(path), "checkpoint", path)
    raise ModelLoadError(
        f"Don't know how to load {path.name!r}: expected a .pth/.pt official checkpoint, a "
        ".keras file, a .weights.h5 file with its config, or a Keras preset directory."
    )
