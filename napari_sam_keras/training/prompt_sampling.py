"""micro-sam's training prompts, in numpy: a first prompt from the ground truth, then
corrections sampled where the model is wrong.

Everything is in the model's input frame (x, y in pixels of the resized,
padded image); errors are found on the low-res mask grid (4 input pixels per
cell) and a corrective point lands on a random pixel of a random wrong cell.

* first prompt: one positive point inside the object (away from its edge
  when it is large enough) or its bounding box;
* each correction adds one positive point (in a missed part, else in the
  part already right) and one negative point (in a false-positive part, else
  just around the object inside its grown box, else anywhere in the
  background), as micro-sam's ``IterativePromptGenerator`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


@dataclass
class ObjectPrompt:
    """The prompt of one object at one iteration (model frame)."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    box: np.ndarray | None = None
    mask_input: np.ndarray | None = None

    def copy(self) -> ObjectPrompt:
        return ObjectPrompt(self.points.copy(), self.labels.copy(), self.box, self.mask_input)

    def points_or_none(self) -> np.ndarray | None:
        return self.points if len(self.points) else None

    def labels_or_none(self) -> np.ndarray | None:
        return self.labels if len(self.labels) else None


def first_point(mask: np.ndarray, rng: np.random.Generator, margin: int = 2) -> np.ndarray:
    """A random positive point (x, y) inside ``mask``, ``margin`` pixels from its edge if it can."""
    inner = ndimage.binary_erosion(mask, iterations=margin) if margin else mask
    ys, xs = np.nonzero(inner if inner.any() else mask)
    k = int(rng.integers(len(xs)))
    return np.array([xs[k], ys[k]], np.float32)


def object_box(mask: np.ndarray) -> np.ndarray:
    """The bounding box (x0, y0, x1, y1) of ``mask``, in pixel coordinates."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], np.float32)


def first_prompt(mask: np.ndarray, kind: str, rng: np.random.Generator) -> ObjectPrompt:
    """The first prompt of an object (``kind`` ``"point"`` or ``"box"``) from its mask."""
    if kind == "point":
        return ObjectPrompt(first_point(mask, rng)[None], np.ones(1, np.int32))
    return ObjectPrompt(box=object_box(mask))


def _cell_to_point(cells: tuple[np.ndarray, np.ndarray], factor: int, rng) -> np.ndarray:
    rows, cols = cells
    k = int(rng.integers(len(rows)))
    y = rows[k] * factor + int(rng.integers(factor))
    x = cols[k] * factor + int(rng.integers(factor))
    return np.array([x, y], np.float32)


def corrective_points(
    predicted: np.ndarray, target: np.ndarray, factor: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One positive and one negative point (model frame) from a low-res prediction's errors.

    ``predicted`` and ``target`` are (m, m) bool masks on the low-res grid;
    ``factor`` is the number of input pixels per low-res cell.
    """
    missed = target & ~predicted
    positive = np.nonzero(missed if missed.any() else target)
    wrong = predicted & ~target
    if wrong.any():
        negative = np.nonzero(wrong)
    else:
        rows = np.flatnonzero(target.any(axis=1))
        cols = np.flatnonzero(target.any(axis=0))
        ring = np.zeros_like(target)
        ring[max(rows[0] - 1, 0) : rows[-1] + 2, max(cols[0] - 1, 0) : cols[-1] + 2] = True
        ring &= ~target
        negative = np.nonzero(ring if ring.any() else ~target)
    points = np.stack(
        [_cell_to_point(positive, factor, rng), _cell_to_point(negative, factor, rng)]
    )
    return points, np.array([1, 0], np.int32)


def best_output(iou_predictions: np.ndarray, multimask: bool) -> int:
    """Which of the decoder's 4 outputs a prompt's answer is: the best-scored of the three
    multimask outputs, or the single-mask output."""
    return 1 + int(np.argmax(iou_predictions[1:])) if multimask else 0
