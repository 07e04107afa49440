"""Prompts -> objects -> masks: the one path from points and boxes to one mask per object.

Every caller (the CLI, the napari widgets, scripts) groups its prompts into
:class:`PromptObject` s — by the rule that fits how the user gave them — and
hands them to :func:`predict_objects`, which asks the predictor for one mask
per object the fastest way (one batched call for box-only objects, the
best-scoring mask only otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PromptError


@dataclass(frozen=True, eq=False)
class PromptObject:
    """The prompts of one object, in image pixels.

    Attributes:
        point_coords: (N, 2) points as (x, y), or None.
        point_labels: (N,) 1 (positive) or 0 (negative), or None.
        box: (4,) x0, y0, x1, y1, or None.
    """

    point_coords: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None

    @classmethod
    def from_prompts(cls, points: Sequence, box: Sequence[float] | None = None) -> PromptObject:
        """One object from its points ``(x, y, label)`` (any number) and at most one box."""
        if not len(points):
            return cls(box=np.asarray(box, np.float32))
        values = np.asarray(points, np.float32).reshape(-1, 3)
        return cls(
            point_coords=values[:, :2],
            point_labels=values[:, 2].astype(np.int32),
            box=None if box is None else np.asarray(box, np.float32),
        )

    @property
    def has_points(self) -> bool:
        return self.point_coords is not None and len(self.point_coords) > 0

    def predict_kwargs(self) -> dict:
        """Keyword arguments of :meth:`SAMPredictor.predict` for this object."""
        kwargs = {}
        if self.has_points:
            kwargs["point_coords"] = np.asarray(self.point_coords, np.float32)
            kwargs["point_labels"] = np.asarray(self.point_labels, np.int32)
        if self.box is not None:
            kwargs["box"] = np.asarray(self.box, np.float32)
        return kwargs

    def mapped(
        self,
        points: Callable[[np.ndarray], np.ndarray],
        boxes: Callable[[np.ndarray], np.ndarray],
    ) -> PromptObject:
        """The same object with its points and box passed through coordinate maps."""
        return PromptObject(
            point_coords=points(self.point_coords) if self.has_points else None,
            point_labels=self.point_labels if self.has_points else None,
            box=None if self.box is None else boxes(np.asarray(self.box)[None])[0],
        )


def group_by_box(
    points_xy: np.ndarray, point_labels: np.ndarray, boxes: np.ndarray
) -> list[PromptObject]:
    """Group prompts drawn on an image (no order) into objects.

    * points only: one object from all points;
    * boxes only: one object per box;
    * boxes and points: each point joins the first box that contains it; the points
      outside every box make one object of their own when one of them is positive (a
      click on one cell and a box around another are two objects); negative points
      outside every box (and no positive one) join the box when there is only one, and
      are an error with several boxes (no box to give them to).
    """
    xy = np.asarray(points_xy, np.float64).reshape(-1, 2)
    labels = np.asarray(point_labels).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(xy) == 0 and len(boxes) == 0:
        raise PromptError("No prompts: give points or boxes.")
    if len(boxes) == 0:
        objects = [PromptObject(xy, labels)]
    elif len(xy) == 0:
        objects = [PromptObject(box=b) for b in boxes]
    else:
        owner = points_owner(xy, boxes)
        outside = owner < 0
        if outside.any() and not (labels[outside] == 1).any():
            if len(boxes) > 1:
                raise PromptError(
                    f"{int(outside.sum())} negative point(s) lie in none of the {len(boxes)} "
                    "boxes: with several boxes, a negative point must lie inside the box of "
                    "its object."
                )
            owner[outside] = 0  # one box: its negative points may lie just outside it
            outside[:] = False
        objects = []
        for j, b in enumerate(boxes):
            mine = owner == j
            if mine.any():
                objects.append(PromptObject(xy[mine], labels[mine], b))
            else:
                objects.append(PromptObject(box=b))
        if outside.any():
            objects.append(PromptObject(xy[outside], labels[outside]))
    require_foreground(objects)
    return objects


def points_owner(points_xy: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each (x, y) point, the index of the first box (x0, y0, x1, y1) holding it, or -1."""
    xy = np.asarray(points_xy, np.float64).reshape(-1, 2)
    owner = np.full(len(xy), -1)
    for j, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        owner[(owner < 0) & inside] = j
    return owner


def require_foreground(objects: Sequence[PromptObject]) -> None:
    """An object made of background points only has nothing to segment: say so."""
    for number, obj in enumerate(objects, start=1):
        if obj.box is None and obj.has_points and not (np.asarray(obj.point_labels) == 1).any():
            raise PromptError(
                f"object {number} has only background points (label 0, negative): "
                "add a positive point or a box."
            )


def predict_objects(
    predictor, objects: Sequence[PromptObject], multimask: bool | None = None
) -> list[tuple[np.ndarray, float]]:
    """One (H, W) boolean mask and its predicted IoU per object.

    The predictor must hold the image's embedding.  ``multimask``: ask for
    SAM's three masks and keep the best-scoring one; ``None`` does that only
    for an object given by one lone point (the case SAM's authors recommend it
    for).  Objects given by a box alone go through one batched call.
    """
    if not objects:
        raise PromptError("No prompts: give points or boxes.")
    if len(objects) > 1 and all(not o.has_points and o.box is not None for o in objects):
        boxes = np.stack([np.asarray(o.box, np.float32) for o in objects])
        batch, scores, _ = predictor.predict_batch(boxes=boxes, multimask_output=bool(multimask))
        best = np.argmax(scores, axis=1)
        return [
            (np.asarray(batch[i, best[i]], bool), float(scores[i, best[i]]))
            for i in range(len(objects))
        ]
    results = []
    for obj in objects:
        lone_point = obj.has_points and len(obj.point_coords) == 1 and obj.box is None
        wanted = lone_point if multimask is None else multimask
        mask, score = predictor.predict_best(**obj.predict_kwargs(), multimask_output=wanted)
        results.append((np.asarray(mask, bool), score))
    return results


def objects_to_labels(
    results: Sequence[tuple[np.ndarray, float]], shape: tuple[int, int]
) -> np.ndarray:
    """The label image of :func:`predict_objects`' masks: uint32 (H, W), 0 background,
    object k (in the prompts' order) labelled k; a later object is drawn over an earlier
    one where they overlap (``napari-sam-keras predict`` and ``batch --prompts``)."""
    labels = np.zeros(shape, dtype=np.uint32)
    for number, (mask, _score) in enumerate(results, start=1):
        labels[mask] = number
    return labels
