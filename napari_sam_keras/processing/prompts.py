"""Checking prompts given by a user and mapping them into the model's input frame."""

from __future__ import annotations

import numpy as np

from ..errors import PromptError
from .prompt_rules import check_box_area


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    try:
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PromptError(f"{what} must be numbers.") from err
    if not np.all(np.isfinite(array)):
        raise PromptError(f"{what} contain NaN or infinite values.")
    return array


def check_points(
    coords, labels, image_size: tuple[int, int], batched: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validate (N, 2) xy points and (N,) labels in {0, 1}; (B, N, ...) when ``batched``."""
    if coords is None or labels is None:
        raise PromptError("point_coords and point_labels must be given together.")
    ndim = 3 if batched else 2
    coords = _finite(coords, "Point coordinates")
    if coords.ndim != ndim or coords.shape[-1] != 2:
        want = "(B, N, 2)" if batched else "(N, 2)"
        raise PromptError(f"point_coords must have shape {want} as (x, y); got {coords.shape}.")
    labels = np.asarray(labels)
    if labels.shape != coords.shape[:-1]:
        raise PromptError(
            f"point_labels has shape {labels.shape}, but there are {coords.shape[:-1]} points: "
            "give one label (1 positive, 0 negative) per point."
        )
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise PromptError("point_labels must be 1 (positive) or 0 (negative).")
    if coords.shape[-2] == 0:
        raise PromptError("point_coords is empty; give at least one point or leave it None.")
    check_inside(coords.reshape(-1, 2), image_size, "Point")
    return coords, labels.astype(np.int32)


def check_inside(xy: np.ndarray, image_size: tuple[int, int], what: str) -> None:
    """Raise if any (x, y) lies outside an image of ``image_size`` = (H, W)."""
    h, w = image_size
    outside = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
    if outside.any():
        first = xy[np.argmax(outside)]
        raise PromptError(
            f"{what} (x={first[0]:g}, y={first[1]:g}) lies outside the image "
            f"(width {w}, height {h})."
        )


def check_boxes(boxes, image_size: tuple[int, int], batched: bool = False) -> np.ndarray:
    """Validate XYXY boxes: (4,) or (1, 4), or (B, 4) when ``batched``."""
    boxes = _finite(boxes, "Box coordinates")
    if not batched and boxes.shape == (1, 4):
        boxes = boxes[0]
    if (batched and (boxes.ndim != 2 or boxes.shape[-1] != 4)) or (
        not batched and boxes.shape != (4,)
    ):
        want = "(B, 4)" if batched else "(4,)"
        raise PromptError(f"box must have shape {want} as x0, y0, x1, y1; got {boxes.shape}.")
    flat = boxes.reshape(-1, 4)
    if ((flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1])).any():
        raise PromptError("A box must be given as x0, y0, x1, y1 with x0 <= x1 and y0 <= y1.")
    check_box_area(flat)
    check_inside(flat.reshape(-1, 2), image_size, "Box corner")
    return boxes


def check_mask_input(mask, low_res: int, batched: bool = False) -> np.ndarray:
    """Validate low-res mask logits: (1, m, m) or (m, m); (B, 1, m, m) when ``batched``."""
    mask = _finite(mask, "mask_input")
    want = (1, low_res, low_res)
    if batched:
        if mask.ndim != 4 or mask.shape[1:] != want:
            raise PromptError(f"mask_input must have shape (B, 1, {low_res}, {low_res}).")
        return mask[:, 0].astype(np.float32)
    if mask.shape == want[1:]:
        mask = mask[None]
    if mask.shape != want:
        raise PromptError(
            f"mask_input must be low-res logits of shape (1, {low_res}, {low_res}) as returned "
            f"by predict(); got {mask.shape}."
        )
    return mask[0].astype(np.float32)


def to_input_frame(
    xy: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Scale (..., 2) xy coordinates from the original image to the resized input frame."""
    out = np.array(xy, dtype=np.float64, copy=True)
    out[..., 0] *= input_size[1] / original_size[1]
    out[..., 1] *= input_size[0] / original_size[0]
    return out.astype(np.float32)


def check_prompt_batch(
    point_coords, point_labels, boxes, mask_input, shape, *, mask_inputs: bool = True
):
    """``predict_batch``'s prompts checked against an image of ``shape`` (H, W):
    (points, labels, boxes (B, 4), B), every batch of the same length B > 0.
    ``mask_inputs``: whether the caller takes mask inputs (said when no prompt is given)."""
    sizes = set()
    if point_coords is not None or point_labels is not None:
        point_coords, point_labels = check_points(point_coords, point_labels, shape, batched=True)
        sizes.add(len(point_coords))
    if boxes is not None:
        boxes = check_boxes(boxes, shape, batched=True)
        sizes.add(len(boxes))
    if mask_input is not None:
        sizes.add(len(mask_input))
    if not sizes:
        what = "points, boxes or mask inputs" if mask_inputs else "points or boxes"
        raise PromptError(f"No prompt: give {what}.")
    if len(sizes) > 1:
        raise PromptError(f"Prompt batches differ in length: {sorted(sizes)}.")
    (batch,) = sizes
    if batch == 0:
        raise PromptError("The prompt batch is empty.")
    return point_coords, point_labels, boxes, batch
