"""Writing a Keras preset folder in keras-cv's format (no keras-cv needed).

A preset folder holds ``config.json`` (the serialized ``SegmentAnythingModel``,
with ``"weights"`` naming the weights file), ``model.weights.h5`` and
``metadata.json``, as keras-cv's ``save_to_preset`` writes them, so
:func:`napari_sam_keras.load_model` and keras-cv read the folder alike.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from ..runtime.backend import import_keras

WEIGHTS_FILE = "model.weights.h5"


def _without(config: Any, key: str) -> Any:
    if isinstance(config, dict):
        return {k: _without(v, key) for k, v in config.items() if k != key}
    if isinstance(config, list):
        return [_without(v, key) for v in config]
    return config


def save_to_preset(model: Any, folder: Path) -> None:
    """Write ``model`` (weights, config, metadata) into the existing folder ``folder``."""
    keras = import_keras()
    model.save_weights(folder / WEIGHTS_FILE)
    config = keras.saving.serialize_keras_object(model)
    config["weights"] = WEIGHTS_FILE
    for key in ("compile_config", "build_config"):
        config = _without(config, key)
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    metadata = {
        "keras_version": keras.version(),
        "parameter_count": model.count_params(),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=4))
