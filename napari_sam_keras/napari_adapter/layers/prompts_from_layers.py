"""Points and Shapes layers -> SAM prompts in the image's pixel coordinates.

Every vertex goes through world coordinates, ``image.world_to_data(
prompts.data_to_world(p))``, so the layers' scale, translate and other
transforms are honoured, and layers with fewer dimensions than the image (a 2D
Points layer over a 3D stack) are placed on the viewer's current slice.

Only prompts on the image slice being segmented are used.  A point on that
slice but outside the image is an error (:class:`~napari_sam_keras.PromptError`),
never dropped silently.  Boxes that stick out of the image are clipped to it;
a box entirely outside is an error.

SAM wants (x, y) = (column, row); napari layers are (row, column).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import PromptError
from ...processing import prompt_rules
from ...segmentation.prompt_objects import PromptObject, group_by_box, points_owner
from .image_slices import ImageSlice

#: Name of the Points-layer feature that says whether a point is positive.
LABEL_FEATURE = "label"
POSITIVE = "positive"
NEGATIVE = "negative"
POINT_TYPES = (POSITIVE, NEGATIVE)
#: Boxes narrower or lower than this many image pixels are refused (a click, not a drag).
MIN_BOX_SIDE = prompt_rules.MIN_BOX_SIDE  # the core rule, refused here with layer names

_POSITIVE_WORDS = {
    "positive",
    "pos",
    "+",
    "1",
    "true",
    "yes",
    "foreground",
    "fg",
    "object",
    "include",
}
_NEGATIVE_WORDS = {"negative", "neg", "-", "0", "false", "no", "background", "bg", "exclude"}


class NoPromptsError(PromptError):
    """There are no prompts on the slice (live mode treats this as "nothing to show")."""


@dataclass(frozen=True, eq=False)
class SlicePrompts:
    """The prompts on one slice, in full-resolution pixel coordinates of that slice.

    Attributes:
        points_xy: (N, 2) x, y of the points.
        point_labels: (N,) 1 positive, 0 negative.
        boxes: (B, 4) x0, y0, x1, y1.
        point_rows: indices into the Points layer's data of the points used.
        shape_rows: indices into the Shapes layer's data of the shapes used.
    """

    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    point_rows: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))
    shape_rows: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))

    @property
    def empty(self) -> bool:
        return len(self.points_xy) == 0 and len(self.boxes) == 0

    def signature(self) -> tuple:
        """A hashable summary, to tell whether the prompts changed."""
        return (
            np.round(self.points_xy, 6).tobytes(),
            self.point_labels.tobytes(),
            np.round(self.boxes, 6).tobytes(),
        )


def label_value(value) -> int:
    """A point's ``label`` feature -> 1 (positive) or 0 (negative)."""
    if value is None:
        return 1
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _POSITIVE_WORDS:
            return 1
        if word in _NEGATIVE_WORDS:
            return 0
        raise PromptError(
            f"Point label {value!r} is neither positive nor negative; use "
            f"{POSITIVE!r} or {NEGATIVE!r} (or 1 / 0)."
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PromptError(f"Point label {value!r} is neither positive nor negative.") from None
    if np.isnan(number):
        return 1
    if number not in (0.0, 1.0):
        raise PromptError(f"Point label {value!r} must be 1 (positive) or 0 (negative).")
    return int(number)


def point_labels_of(points_layer) -> np.ndarray:
    """(N,) 1/0 labels of all points of a Points layer (all positive without a feature)."""
    n = len(points_layer.data)
    features = points_layer.features
    if LABEL_FEATURE not in getattr(features, "columns", ()):
        return np.ones(n, dtype=np.int32)
    return np.array([label_value(v) for v in features[LABEL_FEATURE]], dtype=np.int32)


def to_image_data(layer, coords: np.ndarray, image, world_point) -> np.ndarray:
    """(N, layer.ndim) data coordinates of ``layer`` -> (N, image.ndim) of ``image``.

    Goes through world coordinates; hidden world axes the layer lacks come from
    ``world_point`` (the viewer's ``dims.point``).
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, layer.ndim)
    world_point = np.asarray(world_point, dtype=np.float64)
    out = np.empty((len(coords), image.ndim), dtype=np.float64)
    for k, row in enumerate(coords):
        world = world_point.copy()
        w = np.asarray(layer.data_to_world(row), dtype=np.float64)
        if len(world) < len(w):  # a layer with more dims than the dims model knows
            world = np.concatenate([np.zeros(len(w) - len(world)), world])
        world[len(world) - len(w) :] = w
        out[k] = np.asarray(image.world_to_data(world), dtype=np.float64)
    return out


def _on_slice(image_coords: np.ndarray, image_slice: ImageSlice) -> np.ndarray:
    """Boolean (N,): which coordinates lie on the slice (by their hidden axes)."""
    keep = np.ones(len(image_coords), dtype=bool)
    for axis, i in enumerate(image_slice.index):
        if i is not None:
            keep &= np.floor(image_coords[:, axis] + 0.5) == i
    return keep


def _inside(rc: np.ndarray, shape2d) -> np.ndarray:
    h, w = shape2d
    return (rc[:, 0] >= -0.5) & (rc[:, 0] < h - 0.5) & (rc[:, 1] >= -0.5) & (rc[:, 1] < w - 0.5)


def points_on_slice(points_layer, image_slice: ImageSlice, world_point):
    """(points_xy (N, 2), labels (N,), rows (N,)) of the points on the slice.

    Raises :class:`PromptError` if a point on the slice lies outside the image.
    """
    empty = (np.zeros((0, 2)), np.zeros((0,), dtype=np.int32), np.zeros((0,), dtype=int))
    if points_layer is None or len(points_layer.data) == 0:
        return empty
    coords = to_image_data(points_layer, points_layer.data, image_slice.layer, world_point)
    rows = np.flatnonzero(_on_slice(coords, image_slice))
    if len(rows) == 0:
        return empty
    r, c = image_slice.slice_axes
    rc = coords[rows][:, [r, c]]
    outside = ~_inside(rc, image_slice.shape2d)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        h, w = image_slice.shape2d
        raise PromptError(
            f"{int(outside.sum())} point(s) of layer {points_layer.name!r} lie outside image "
            f"{image_slice.layer.name!r} ({h} x {w} pixels), e.g. point {int(rows[k])} at "
            f"row {rc[k, 0]:.1f}, column {rc[k, 1]:.1f}. Move or delete them."
        )
    labels = point_labels_of(points_layer)[rows]
    return rc[:, ::-1].copy(), labels, rows


def boxes_on_slice(shapes_layer, image_slice: ImageSlice, world_point):
    """(boxes (B, 4) x0, y0, x1, y1, rows (B,)) of the shapes on the slice.

    Rectangles are boxes; any other shape gives its bounding box.  Boxes are
    clipped to the image; a box entirely outside, or one without area (less
    than :data:`MIN_BOX_SIDE` pixels wide or high), raises :class:`PromptError`.
    """
    if shapes_layer is None or len(shapes_layer.data) == 0:
        return np.zeros((0, 4)), np.zeros((0,), dtype=int)
    r, c = image_slice.slice_axes
    h, w = image_slice.shape2d
    boxes, rows = [], []
    for k, vertices in enumerate(shapes_layer.data):
        coords = to_image_data(shapes_layer, vertices, image_slice.layer, world_point)
        centre = coords.mean(axis=0, keepdims=True)
        if not _on_slice(centre, image_slice)[0]:
            continue
        rmin, rmax = coords[:, r].min(), coords[:, r].max()
        cmin, cmax = coords[:, c].min(), coords[:, c].max()
        if rmax - rmin < MIN_BOX_SIDE or cmax - cmin < MIN_BOX_SIDE:
            raise PromptError(
                f"Box {k} of layer {shapes_layer.name!r} has no area ({rmax - rmin:.1f} x "
                f"{cmax - cmin:.1f} pixels; a click in rectangle mode makes one): drag to draw "
                "a box, or delete it (Shift+C clears all prompts)."
            )
        if rmax < -0.5 or cmax < -0.5 or rmin > h - 0.5 or cmin > w - 0.5:
            raise PromptError(
                f"Shape {k} of layer {shapes_layer.name!r} lies entirely outside image "
                f"{image_slice.layer.name!r} ({h} x {w} pixels). Move or delete it."
            )
        box = [
            np.clip(cmin, 0, w - 1),
            np.clip(rmin, 0, h - 1),
            np.clip(cmax, 0, w - 1),
            np.clip(rmax, 0, h - 1),
        ]
        prompt_rules.check_box_area(
            np.asarray(box), f"Box {k} of layer {shapes_layer.name!r}, clipped to the image,"
        )
        boxes.append(box)
        rows.append(k)
    if not boxes:
        return np.zeros((0, 4)), np.zeros((0,), dtype=int)
    return np.asarray(boxes, dtype=np.float64), np.asarray(rows, dtype=int)


def prompts_on_slice(
    points_layer, shapes_layer, image_slice: ImageSlice, world_point
) -> SlicePrompts:
    """All prompts on ``image_slice`` from a Points and a Shapes layer (either may be None)."""
    xy, labels, prow = points_on_slice(points_layer, image_slice, world_point)
    boxes, srow = boxes_on_slice(shapes_layer, image_slice, world_point)
    return SlicePrompts(
        points_xy=xy, point_labels=labels, boxes=boxes, point_rows=prow, shape_rows=srow
    )


def objects_on_slice(prompts: SlicePrompts) -> list[PromptObject]:
    """The slice's prompts grouped into objects (the rule of :func:`group_by_box`)."""
    if prompts.empty:
        raise NoPromptsError(
            "No prompts on this slice: add points (positive/negative) to the points layer or "
            "draw rectangles in the shapes layer, on the slice you want to segment."
        )
    return group_by_box(prompts.points_xy, prompts.point_labels, prompts.boxes)


def box_merge_hint(prompts: SlicePrompts) -> str:
    """A warning when the newest box holds points given before it: they make one object.

    ("" when it does not.)  A box drawn over an earlier click on another cell, before that
    click was segmented, would otherwise silently merge both into one broken object.
    """
    if len(prompts.boxes) == 0 or len(prompts.points_xy) == 0:
        return ""
    inside = int((points_owner(prompts.points_xy, prompts.boxes) == len(prompts.boxes) - 1).sum())
    if inside == 0:
        return ""
    return (
        f"\u26a0 the new box and the {inside} point(s) inside it make ONE object. To keep "
        "them apart, undo the box, Segment or Commit [C] the points first, then draw it."
    )
