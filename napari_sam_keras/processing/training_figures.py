"""Figures of a fine-tuning run as rows a person reads: before/after tables, the last loss.

Shared by ``napari-sam-keras finetune``/``evaluate`` (printed) and the napari Fine-tune
widget (a table in the dock).  The figures are what :func:`~napari_sam_keras.evaluate_prompts`
and :func:`~napari_sam_keras.evaluate_instances` return and what ``FineTuneResult.history``
holds per epoch: mappings (or dataclasses) of names to numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

#: Readable names for the figures' keys; other keys are shown as they are.
NAMES = {
    "point": "IoU, 1 click",
    "iou_point": "IoU, 1 click",
    "single_point": "IoU, 1 click",
    "val_iou_point": "IoU, 1 click",
    "box": "IoU, box",
    "iou_box": "IoU, box",
    "val_iou_box": "IoU, box",
    "corrected": "IoU, after corrections",
    "iterative": "IoU, after corrections",
    "msa": "mSA",
    "val_msa": "mSA",
    "sa50": "SA50",
    "sa75": "SA75",
    "f1": "F1",
    "train_loss": "training loss",
    "loss": "training loss",
}


def as_mapping(figures) -> dict:
    """``figures`` (a mapping, a dataclass or an object with attributes) as a dict."""
    if figures is None:
        return {}
    if isinstance(figures, Mapping):
        return dict(figures)
    if dataclasses.is_dataclass(figures):
        return dataclasses.asdict(figures)
    return {k: v for k, v in vars(figures).items() if not k.startswith("_")}


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def figure_rows(figures) -> list[tuple[str, float]]:
    """``(readable name, value)`` for every number in ``figures`` (others are skipped)."""
    rows = []
    for key, value in as_mapping(figures).items():
        number = _number(value)
        if number is not None:
            rows.append((NAMES.get(key, str(key)), number))
    return rows


def before_after_rows(before, after) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(name, before, after, gain)`` for each figure in either (``None`` where missing)."""
    b, a = dict(figure_rows(before)), dict(figure_rows(after))
    names = list(b) + [name for name in a if name not in b]
    rows = []
    for name in names:
        gain = a[name] - b[name] if name in a and name in b else None
        rows.append((name, b.get(name), a.get(name), gain))
    return rows


def format_rows(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A plain-text table (numbers with 3 decimals, gains with a sign, ``-`` where missing)."""

    def cell(value, column: int) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            signed = column == 3 and len(header) == 4
            return f"{value:+.3f}" if signed else f"{value:.3f}"
        return str(value)

    table = [list(header)] + [[cell(v, i) for i, v in enumerate(row)] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for r in table:
        first = r[0].ljust(widths[0])
        rest = [r[i].rjust(widths[i]) for i in range(1, len(r))]
        lines.append("  ".join([first, *rest]).rstrip())
    return "\n".join(lines)


def history_columns(history) -> dict[str, list[float | None]]:
    """Per-epoch records (a list of mappings or objects), or a mapping of lists, as one
    list per key (``None`` where an epoch has no such number)."""
    if history is None:
        return {}
    if isinstance(history, Mapping):
        return {key: [_number(v) for v in values] for key, values in history.items()}
    rows = [as_mapping(record) for record in history]
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    return {key: [_number(row.get(key)) for row in rows] for key in keys}


def last_epoch(history) -> dict[str, float]:
    """The numbers of the last epoch of ``history`` (see :func:`history_columns`)."""
    return {
        key: values[-1]
        for key, values in history_columns(history).items()
        if values and values[-1] is not None
    }


def latest_loss(history) -> float | None:
    """The training loss of the last epoch of ``history``, or ``None``."""
    last = last_epoch(history)
    return next((last[key] for key in ("train_loss", "loss") if key in last), None)
