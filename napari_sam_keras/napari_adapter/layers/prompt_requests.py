"""From the prompt layers to a job, and back: what was used, and removing it afterwards.

Everything is read on the GUI thread into plain arrays (:class:`PromptRequest`),
so the worker never touches a layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ImageError
from ..jobs.prompt_job import PromptJob
from .image_slices import ImageSlice, current_slice
from .prompts_from_layers import SlicePrompts, objects_on_slice, prompts_on_slice


@dataclass(eq=False)
class PromptRequest:
    """A job plus what is needed to write its result back and tidy up.

    ``signature`` says what the result depends on (slice, model, options,
    prompts): a preview whose signature matches the current one is up to date.
    """

    job: object
    signature: tuple
    points_layer: object = None
    shapes_layer: object = None
    used_points: np.ndarray | None = None
    used_shapes: tuple = ()

    @property
    def image_slice(self) -> ImageSlice:
        return self.job.image_slice

    @property
    def prompts(self) -> SlicePrompts | None:
        return self.job.prompts

    def first_positive_point(self) -> np.ndarray | None:
        """(x, y) of the first positive point used, or ``None``."""
        prompts = self.prompts
        if prompts is None:
            return None
        positive = np.flatnonzero(prompts.point_labels == 1)
        return prompts.points_xy[positive[0]] if len(positive) else None


def image_slice_of(image, dims) -> ImageSlice:
    """The displayed slice of ``image``; a clear error when there is no image."""
    if image is None:
        raise ImageError(
            "No image layer to segment: open an image (or File > Open Sample > SAM Keras) "
            "and choose it in the 'image' box."
        )
    return current_slice(image, dims)


def read_prompts(points, shapes, image_slice: ImageSlice, dims) -> SlicePrompts:
    """The prompts of the two layers on the slice (user errors raised as ``SAMError``)."""
    return prompts_on_slice(points, shapes, image_slice, dims.point)


def note_used(request: PromptRequest, points, shapes) -> PromptRequest:
    """Copy the vertices of the prompts the request uses (to remove them after writing)."""
    prompts = request.prompts
    if prompts is None:
        return request
    request.points_layer, request.shapes_layer = points, shapes
    if points is not None and len(prompts.point_rows):
        request.used_points = np.array(points.data[prompts.point_rows], copy=True)
    if shapes is not None and len(prompts.shape_rows):
        request.used_shapes = tuple(np.array(shapes.data[i], copy=True) for i in prompts.shape_rows)
    return request


def prompt_request(
    image_slice: ImageSlice,
    prompts: SlicePrompts | None,
    source: str,
    multimask: bool,
    embed_only: bool = False,
    tiling: tuple[int, int] | None = None,
) -> PromptRequest:
    """The request segmenting ``prompts`` (``None``: only compute the embedding).

    ``tiling``: (tile shape, halo) to cut the slice into tiles, or None.
    """
    if prompts is not None:
        objects_on_slice(prompts)  # a user error is reported before loading anything
    job = PromptJob(
        image_slice=image_slice,
        prompts=prompts,
        model_source=source,
        multimask=multimask,
        embed_only=embed_only,
        tiling=tiling,
    )
    prompt_key = None if prompts is None else prompts.signature()
    signature = (*image_slice.key, source, multimask, prompt_key, tiling)
    return PromptRequest(job=job, signature=signature)


def _matching_rows(data: np.ndarray, used: np.ndarray) -> set[int]:
    if not len(data) or data.shape[1:] != used.shape[1:]:
        return set()
    hit = (np.abs(data[:, None, :] - used[None]) < 1e-9).all(-1)
    return set(np.flatnonzero(hit.any(1)).tolist())


def remove_used_prompts(viewer, request: PromptRequest) -> None:
    """Delete the points and shapes the request used (others stay: other slices, new clicks)."""
    points = request.points_layer
    if points is not None and request.used_points is not None and points in viewer.layers:
        rows = _matching_rows(np.asarray(points.data), request.used_points)
        if rows:
            points.selected_data = rows
            points.remove_selected()
    shapes = request.shapes_layer
    if shapes is not None and request.used_shapes and shapes in viewer.layers:
        rows = {
            i
            for i, verts in enumerate(shapes.data)
            if any(v.shape == verts.shape and np.allclose(v, verts) for v in request.used_shapes)
        }
        if rows:
            shapes.selected_data = rows
            shapes.remove_selected()


def clear_layer(layer) -> int:
    """Delete every point or shape of a prompt layer; returns how many there were."""
    if layer is None or len(layer.data) == 0:
        return 0
    n = len(layer.data)
    layer.selected_data = set(range(n))
    layer.remove_selected()
    return n
