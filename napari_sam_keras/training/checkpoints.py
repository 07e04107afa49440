"""Per-epoch training checkpoints: written atomically, read back to resume a run.

One file, ``checkpoint.npz`` in the checkpoint folder, replaced after every
epoch through :func:`~napari_sam_keras.files.atomic_write.atomic_write`: a
run killed at any moment leaves the previous complete checkpoint (or none),
never half of one.  It holds every weight being trained, the optimizers'
state (moments, step counters), the history so far and a signature of the
run's data and settings, so a checkpoint is never resumed by another run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TrainingSettingsError
from ..files.atomic_write import atomic_write
from ..runtime.backend import import_keras

CHECKPOINT_NAME = "checkpoint.npz"


def _numpy(variable: Any) -> np.ndarray:
    return np.asarray(import_keras().ops.convert_to_numpy(variable))


def save_checkpoint(
    folder: str | os.PathLike, groups: dict[str, list[Any]], state: dict[str, Any]
) -> Path:
    """Write the variables of each group (name -> variables, in a fixed order) and ``state``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"{group}/{i}": _numpy(v)
        for group, variables in groups.items()
        for i, v in enumerate(variables)
    }
    arrays["state"] = np.array(json.dumps(state))
    path = folder / CHECKPOINT_NAME
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def read_checkpoint(folder: str | os.PathLike, signature: str) -> tuple[dict, dict] | None:
    """(state, arrays) of the checkpoint in ``folder``, or None when there is none.

    A checkpoint of another run (other data or settings) is an error, so a
    folder is never silently reused.
    """
    path = Path(folder) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        state = json.loads(str(arrays.pop("state")))
    except (OSError, ValueError, KeyError) as err:
        raise TrainingSettingsError(f"The checkpoint {path} cannot be read ({err}).") from err
    if state.get("signature") != signature:
        raise TrainingSettingsError(
            f"{path} is the checkpoint of another fine-tuning run (other data, model or "
            "settings): choose another checkpoint folder, or delete it to start afresh."
        )
    return state, arrays


def restore_group(arrays: dict[str, np.ndarray], group: str, variables: list[Any]) -> None:
    """Assign a group's saved values to ``variables`` (same order, same shapes)."""
    saved = sorted(
        (k for k in arrays if k.startswith(f"{group}/")), key=lambda k: int(k.split("/")[1])
    )
    if len(saved) != len(variables):
        raise TrainingSettingsError(
            f"The checkpoint holds {len(saved)} {group} values, this run has {len(variables)}."
        )
    for key, variable in zip(saved, variables, strict=True):
        value = arrays[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise TrainingSettingsError(f"The checkpoint's {key} has another shape.")
        variable.assign(value)
