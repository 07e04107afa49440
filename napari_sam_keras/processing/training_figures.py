"""Figures of a fine-tuning run as rows a person reads, and its epochs as they finish.

Shared by ``napari-sam-keras finetune``/``evaluate`` (printed) and the napari Fine-tune
widget (a table and a live plot).  The figures are the dicts that
:func:`~napari_sam_keras.evaluate_prompts` (``point``, ``box``, ``clicks``) and
:func:`~napari_sam_keras.evaluate_instances` (``msa``, ``sa50``, ``sa75``, ``f1``, ...)
return, and the per-epoch records of ``FineTuneResult.history`` (``epoch``, ``loss``,
``instance_loss``, ``val_point_iou``, ``val_box_iou``, ``val_msa``) with
``FineTuneResult.before`` (the base model's ``val_*`` figures).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

#: Readable names of the figures, in the order they are shown; other keys are not shown.
NAMES = {
    "point": "IoU, 1 click",
    "val_point_iou": "IoU, 1 click",
    "box": "IoU, box",
    "val_box_iou": "IoU, box",
    "msa": "mSA",
    "val_msa": "mSA",
    "sa50": "SA50",
    "sa75": "SA75",
    "f1": "F1",
    "loss": "training loss",
    "instance_loss": "instance decoder loss",
}


def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def figure_rows(figures: Mapping | None) -> list[tuple[str, float]]:
    """``(readable name, value)`` for the known figures in ``figures`` (missing ones left
    out); ``clicks`` (IoU after each corrective click) gives one row per click."""
    rows = []
    for key, value in (figures or {}).items():
        if key == "clicks" and isinstance(value, Sequence):
            rows += [
                (f"IoU, {i} corrective click{'s' if i > 1 else ''}", v)
                for i, v in enumerate(map(_number, value), start=1)
                if v is not None
            ]
        elif key in NAMES and _number(value) is not None:
            rows.append((NAMES[key], _number(value)))
    return rows


def before_after_rows(before, after) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(name, before, after, gain)`` for each figure in either (``None`` where missing)."""
    b, a = dict(figure_rows(before)), dict(figure_rows(after))
    names = list(b) + [name for name in a if name not in b]
    return [
        (name, b.get(name), a.get(name), a[name] - b[name] if name in a and name in b else None)
        for name in names
    ]


def validation_figures(record: Mapping | None) -> dict:
    """The held-out figures (``val_*``) of an epoch record or of ``FineTuneResult.before``."""
    return {k: v for k, v in (record or {}).items() if k.startswith("val_") and v is not None}


def format_rows(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A plain-text table (numbers with 3 decimals, gains with a sign, ``-`` where missing)."""
    gain_column = len(header) - 1 if header and header[-1] == "gain" else None

    def cell(value, column: int) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:+.3f}" if column == gain_column else f"{value:.3f}"
        return str(value)

    table = [list(header)] + [[cell(v, i) for i, v in enumerate(row)] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join(
        "  ".join([r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(r))])
        for r in table
    )


def history_columns(history) -> dict[str, list[float | None]]:
    """Per-epoch records as one list per key (``None`` where an epoch has no such number)."""
    rows = [dict(record) for record in history or []]
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    return {key: [_number(row.get(key)) for row in rows] for key in keys}


def read_checkpoint_history(folder: str | os.PathLike) -> list[dict] | None:
    """The epoch records of the checkpoint ``finetune`` keeps in ``folder`` (``None`` when
    there is none yet or it cannot be read now: it is replaced atomically after each epoch)."""
    import json

    import numpy as np

    from ..training.checkpoints import CHECKPOINT_NAME

    path = Path(folder) / CHECKPOINT_NAME
    try:
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["state"]))
    except (OSError, ValueError, KeyError):
        return None
    history = state.get("history")
    return list(history) if isinstance(history, list) else None


class EpochWatcher:
    """A ``progress(done, total)`` for ``finetune`` that also reports finished epochs.

    ``finetune`` reports every step; after each epoch it writes the epoch's record into its
    checkpoint in ``checkpoint_dir``.  At the first step of every epoch after the first (and
    when :meth:`finish` is called) the checkpoint's history is read and, when it grew, handed
    to ``on_epoch(history)``.  ``progress`` (the caller's, may raise ``OperationCancelled``)
    gets every report.
    """

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike,
        epochs: int,
        on_epoch: Callable[[list[dict]], None],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.epochs = max(int(epochs), 1)
        self.on_epoch = on_epoch
        self.progress = progress
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        per_epoch = max(int(total) // self.epochs, 1)
        if done > 1 and (done - 1) % per_epoch == 0:
            self.check()
        if self.progress is not None:
            self.progress(done, total)

    def check(self) -> None:
        history = read_checkpoint_history(self.checkpoint_dir)
        if history and len(history) > self.shown:
            self.shown = len(history)
            self.on_epoch(history)

    def finish(self, history) -> None:
        """The run's final history (its last epoch is never read from the checkpoint)."""
        if history and len(history) > self.shown:
            self.shown = len(history)
            self.on_epoch(list(history))


def latest_loss(history) -> float | None:
    """The training loss of the last epoch of ``history``, or ``None``."""
    records = list(history or [])
    return _number(records[-1].get("loss")) if records else None
