"""Which model to propose when the user has named none.

The default preset (``sam_base_sa1b``) is downloaded from Kaggle on first use,
which fails offline.  :func:`proposed_default` therefore proposes, in order:
the model named by ``$NAPARI_SAM_KERAS_MODEL``; the default preset when its
weights are already in kagglehub's cache; else the demonstration model shipped
with the package, ``demo_nuclei``, with a note saying that it segments
synthetic blobs only.  Nothing here downloads or imports Keras.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import DEFAULT_MODEL, MODEL_ENV_VAR, PRESETS
from .model_source import DEMO_MODEL, configured_model

DEMO_NOTE = (
    f"{DEMO_MODEL} is proposed because no SAM weights are on this machine ({DEFAULT_MODEL} is "
    "not in the download cache): it is a tiny demonstration model that segments the synthetic "
    "blobs of the samples only. For real data choose SAM weights (a preset name, a .pth file "
    f"or a folder), or set ${MODEL_ENV_VAR}."
)


@dataclass(frozen=True)
class ModelChoice:
    """A model to propose and, when it is not what the user would expect, why (``note``)."""

    source: str
    note: str = ""


def kagglehub_cache_folder() -> Path:
    """kagglehub's cache folder (``$KAGGLEHUB_CACHE``, else ``~/.cache/kagglehub``)."""
    folder = os.environ.get("KAGGLEHUB_CACHE")
    return Path(folder) if folder else Path.home() / ".cache" / "kagglehub"


def preset_weights_cached(name: str) -> bool:
    """Whether preset ``name``'s weights were downloaded completely (usable offline).

    Looks for every version of ``keras/sam/keras/<name>`` in kagglehub's cache
    and asks kagglehub whether its ``model.weights.h5`` is marked complete (an
    interrupted download leaves an empty folder behind, which does not count).
    """
    if name not in PRESETS:
        return False
    base = kagglehub_cache_folder() / "models" / "keras" / "sam" / "keras" / name
    if not base.is_dir():
        return False
    try:
        from kagglehub.cache import Cache
        from kagglehub.handle import parse_model_handle
    except ImportError:  # no kagglehub: keras-cv cannot download either
        return False
    cache = Cache()
    for version in sorted(p.name for p in base.iterdir() if p.is_dir() and p.name.isdigit()):
        handle = parse_model_handle(f"keras/sam/keras/{name}/{version}")
        if cache.load_from_cache(handle, "model.weights.h5") is not None:
            return True
    return False


def proposed_default() -> ModelChoice:
    """The model to propose when none was chosen (see the module docstring)."""
    named = configured_model()
    if named:
        return ModelChoice(named)
    if preset_weights_cached(DEFAULT_MODEL):
        return ModelChoice(DEFAULT_MODEL)
    return ModelChoice(DEMO_MODEL, DEMO_NOTE)
