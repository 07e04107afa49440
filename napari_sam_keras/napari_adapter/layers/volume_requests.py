"""The GUI thread's half of "Segment in 3D": the layers read into a :class:`VolumeRequest`.

* The stack: the image's displayed slice (its two axes) plus the **propagation
  axis**, the slider axis the user is on (``viewer.dims.last_used``; when that
  is not a slider of the image, the hidden axis next to the displayed ones).
  Every other axis stays at its current step: for a (T, Z, Y, X) layer the
  object is carried through z at the current t, or through t at the current z.
* Time: an axis labelled ``t`` or ``time`` in ``viewer.dims.axis_labels`` (or
  chosen as time in the widget) is tracked forward
  (:func:`~napari_sam_keras.track_object`) instead of propagated both ways.
* Prompts: those of the prompt layers on every slice along that axis (one
  object: at most one box per slice).  A single negative point alone on a
  slice is a stop marker.

Everything a user can get wrong (a 3D view, a 2D image, no prompts, ...) is
raised here as a :class:`~napari_sam_keras.SAMError`, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import ImageError, PromptError
from ...segmentation.volume import split_prompts
from ..jobs.volume_job import VolumeJob
from .image_slices import ImageSlice, current_slice, spatial_shape
from .prompts_from_layers import (
    NoPromptsError,
    SlicePrompts,
    prompts_on_slice,
    to_image_data,
)

#: Axis labels (``viewer.dims.axis_labels``, case-insensitive) that mean time.
TIME_LABELS = ("t", "time")


@dataclass(eq=False)
class VolumeRequest:
    """A :class:`VolumeJob` plus what is needed to write its result and tidy up.

    The prompt fields match :class:`.prompt_requests.PromptRequest`'s, so
    :func:`.prompt_requests.remove_used_prompts` removes the prompts used.
    """

    job: VolumeJob
    axis_name: str
    points_layer: object = None
    shapes_layer: object = None
    used_points: np.ndarray | None = None
    used_shapes: tuple = ()
    first_positive: tuple[int, np.ndarray] | None = None
    """(position, (x, y)) of the first positive point: the displayed slice's, else the first."""

    @property
    def image_slice(self) -> ImageSlice:
        return self.job.image_slice


def check_display(dims) -> None:
    """Segment in 3D starts from prompts on 2D slices: refuse the 3D view."""
    if dims.ndisplay != 2:
        raise ImageError(
            "Segment in 3D works from the 2D view: switch the viewer to 2D (the 2D/3D button, "
            "or Ctrl+Y), put the prompts on one or more slices and try again. The result can "
            "then be looked at in 3D."
        )


def check_stack(image) -> None:
    """Refuse images without a third axis to carry an object along, and multiscale ones."""
    shape = spatial_shape(image)
    if len(shape) < 3:
        raise ImageError(
            f"Segment in 3D needs a stack (z or time, then y, x): image {image.name!r} is 2D "
            f"({' x '.join(map(str, shape))}). Use 'Segment prompts' for a 2D image."
        )
    if getattr(image, "multiscale", False):
        raise ImageError(
            f"Image {image.name!r} is multiscale; Segment in 3D reads whole slices at full "
            "resolution and does not support multiscale layers yet. Segment its slices one "
            "at a time with 'Segment prompts'."
        )


def propagation_axis(image, dims, slice_axes: tuple[int, int]) -> tuple[int, int]:
    """(layer axis, world axis) to carry the object along: the slider the user is on."""
    offset = dims.ndim - image.ndim
    hidden = [a for a in range(len(spatial_shape(image))) if a not in slice_axes]
    used = int(dims.last_used) - offset
    if used not in hidden:  # a slider of another layer, or none yet: the one next to the view
        below = [a for a in hidden if a < slice_axes[0]]
        used = below[-1] if below else hidden[0]
    return used, used + offset


def axis_label(dims, world_axis: int, layer_axis: int) -> str:
    """The axis' label in the viewer ('z', 't', ...), or ``axis N`` (the image's axis N)
    where napari only numbers its axes."""
    labels = tuple(dims.axis_labels)
    label = str(labels[world_axis]) if 0 <= world_axis < len(labels) else ""
    return f"axis {layer_axis}" if not label or label.lstrip("-").isdigit() else label


def is_time_axis(dims, world_axis: int) -> bool:
    """Whether the viewer labels ``world_axis`` as time (``t`` or ``time``)."""
    labels = tuple(dims.axis_labels)
    if not 0 <= world_axis < len(labels):
        return False
    return str(labels[world_axis]).strip().lower() in TIME_LABELS


def _positions(layer, rows_coords: np.ndarray, job: VolumeJob) -> set[int]:
    """Positions along the axis of image coordinates that lie in the stack."""
    if not len(rows_coords):
        return set()
    keep = np.ones(len(rows_coords), bool)
    for a, i in enumerate(job.stack_index):
        if i is not None:
            keep &= np.floor(rows_coords[:, a] + 0.5) == i
    positions = np.floor(rows_coords[keep, job.axis] + 0.5).astype(int)
    return {int(p) for p in positions if 0 <= p < job.length}


def prompted_positions(points, shapes, job: VolumeJob, world_point) -> list[int]:
    """The positions along the axis that carry a point or a shape (a box's centre)."""
    image = job.image_slice.layer
    found: set[int] = set()
    if points is not None and len(points.data):
        found |= _positions(image, to_image_data(points, points.data, image, world_point), job)
    if shapes is not None and len(shapes.data):
        centres = np.concatenate(
            [
                to_image_data(shapes, verts, image, world_point).mean(axis=0, keepdims=True)
                for verts in shapes.data
            ]
        )
        found |= _positions(image, centres, job)
    return sorted(found)


def core_prompts(prompts: SlicePrompts, where: str) -> dict:
    """One slice's prompts as :func:`~napari_sam_keras.segment_volume` takes them."""
    if len(prompts.boxes) > 1:
        raise PromptError(
            f"Segment in 3D makes one object: {where} has {len(prompts.boxes)} boxes. Keep one "
            "box per slice (points may be added to it), or segment the others one at a time."
        )
    out: dict = {}
    if len(prompts.points_xy):
        out["point_coords"] = np.asarray(prompts.points_xy, np.float64)
        out["point_labels"] = np.asarray(prompts.point_labels, np.int32)
    if len(prompts.boxes):
        out["box"] = np.asarray(prompts.boxes[0], np.float64)
    return out


def volume_request(
    image,
    points,
    shapes,
    dims,
    model_source: str,
    projection: str,
    iou_threshold: float,
    axis_is_time: bool,
) -> VolumeRequest:
    """Read the stack's location and its prompts from the layers (user errors raised)."""
    if image is None:
        raise ImageError(
            "No image layer to segment: open an image (or File > Open Sample > SAM Keras) "
            "and choose it in the 'image' box."
        )
    check_display(dims)
    check_stack(image)
    base = current_slice(image, dims)
    axis, world_axis = propagation_axis(image, dims, base.slice_axes)
    name = axis_label(dims, world_axis, axis)
    track = bool(axis_is_time) or is_time_axis(dims, world_axis)
    unit = "frame" if track else "slice"
    job = VolumeJob(
        image_slice=base,
        axis=axis,
        data=image.data,
        prompts={},
        model_source=model_source,
        projection=projection,
        iou_threshold=float(iou_threshold),
        track=track,
    )
    per_slice: dict[int, dict] = {}
    point_rows: list[np.ndarray] = []
    shape_rows: list[np.ndarray] = []
    positives: dict[int, np.ndarray] = {}
    for position in prompted_positions(points, shapes, job, dims.point):
        found = prompts_on_slice(points, shapes, job.slice_at(position), dims.point)
        if found.empty:
            continue
        per_slice[position] = core_prompts(found, f"{unit} {position} of {name}")
        point_rows.append(found.point_rows)
        shape_rows.append(found.shape_rows)
        positive = np.flatnonzero(found.point_labels == 1)
        if len(positive):
            positives[position] = found.points_xy[positive[0]]
    if not per_slice:
        raise NoPromptsError(
            f"No prompts on any {unit} of {name}: click the object (or draw a box around it) "
            f"on one or more {unit}s, then Segment in 3D. A single negative point alone on a "
            f"{unit} stops the object there."
        )
    split_prompts(per_slice, job.length, base.shape2d, name)  # only stop markers, ...: now
    current = int(base.index[axis])
    first = current if current in positives else min(positives, default=None)
    request = VolumeRequest(
        job=replace(job, prompts=per_slice),
        axis_name=name,
        first_positive=None if first is None else (first, positives[first]),
    )
    request.points_layer, request.shapes_layer = points, shapes
    rows = np.unique(np.concatenate(point_rows)).astype(int) if point_rows else []
    if points is not None and len(rows):
        request.used_points = np.array(points.data[rows], copy=True)
    rows = np.unique(np.concatenate(shape_rows)).astype(int) if shape_rows else []
    if shapes is not None and len(rows):
        request.used_shapes = tuple(np.array(shapes.data[i], copy=True) for i in rows)
    return request
