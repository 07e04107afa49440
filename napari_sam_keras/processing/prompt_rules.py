"""One rule for degenerate prompts and settings, used by every front end alike.

The napari widgets, :class:`~napari_sam_keras.SAMPredictor`, ``segment_volume``,
``track_object``, the instance segmenter and the command line all call these
checks, so a prompt or a threshold refused in one place is refused everywhere,
with the same words, before any work:

* a box must be at least :data:`MIN_BOX_SIDE` pixel wide and high (a click in
  rectangle mode, or a box given as ``10,10,10,40``, has no area);
* thresholds and smoothing are finite and not negative;
* sizes (``min_size``, areas) are whole numbers, not negative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import PromptError, SAMError

#: The least width and height of a box, in pixels.
MIN_BOX_SIDE = 1.0

#: The instance segmenter's (watershed) settings and what each must be.
WATERSHED_THRESHOLDS = (
    "center_distance_threshold",
    "boundary_distance_threshold",
    "foreground_threshold",
    "foreground_smoothing",
    "distance_smoothing",
)
WATERSHED_SIZES = ("min_size",)


def check_box_area(boxes: np.ndarray, what: str = "A box") -> None:
    """Raise :class:`PromptError` if any XYXY box of ``boxes`` ((4,) or (N, 4)) has no area."""
    flat = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]
    small = (width < MIN_BOX_SIDE) | (height < MIN_BOX_SIDE)
    if small.any():
        k = int(np.argmax(small))
        x0, y0, x1, y1 = flat[k]
        raise PromptError(
            f"{what} has no area (x0, y0, x1, y1 = {x0:g}, {y0:g}, {x1:g}, {y1:g}: "
            f"{width[k]:g} x {height[k]:g} pixels); a box must be at least {MIN_BOX_SIDE:g} "
            "pixel wide and high: drag to draw one, or give a point instead."
        )


def ordered_box(values: Any, what: str = "A box") -> tuple[float, float, float, float]:
    """Two opposite corners (x0, y0, x1, y1) in any order -> (x0, y0, x1, y1) with x0 < x1
    and y0 < y1; finite numbers and an area (:func:`check_box_area`), else :class:`PromptError`."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.size != 4 or not np.isfinite(flat).all():
        raise PromptError(f"{what} needs four finite numbers x0, y0, x1, y1, got {values!r}")
    x0, y0, x1, y1 = flat.tolist()
    box = min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)
    check_box_area(np.asarray(box), what)
    return box


def check_point_label(value: Any, what: str = "A point's label") -> int:
    """1 (foreground) or 0 (background), else :class:`PromptError`."""
    if value not in (0, 1) or isinstance(value, bool):
        raise PromptError(f"{what} must be 1 (foreground) or 0 (background), got {value!r}")
    return int(value)


def check_threshold(name: str, value: Any) -> float:
    """A threshold or smoothing value: a finite number, not negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SAMError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(float(value)) or value < 0:
        raise SAMError(f"{name} must be a number of at least 0, got {value!r}")
    return float(value)


def check_size(name: str, value: Any, minimum: int = 0) -> int:
    """A size in pixels (or a count): a whole number of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, (float, np.floating)) and float(value).is_integer()):
            raise SAMError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise SAMError(f"{name} must be at least {minimum}, got {value!r}")
    return int(value)


def check_watershed_settings(values: Mapping[str, Any]) -> None:
    """Check the instance segmenter's settings given in ``values`` (None values skipped)."""
    for name, value in values.items():
        if value is None:
            continue
        if name in WATERSHED_THRESHOLDS:
            check_threshold(name, value)
        elif name in WATERSHED_SIZES:
            check_size(name, value)
