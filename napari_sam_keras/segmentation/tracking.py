"""One cell through every frame: SAM prompted frame by frame, with a simple motion model.

:func:`track_object` is :func:`~napari_sam_keras.segmentation.volume.segment_volume`
forward in time: from the first prompted frame, each frame is prompted from
the previous frame's mask, shifted first by the object's smoothed motion (the
centroid shift between frames, exponentially smoothed) so that a moving cell
is met where it is now rather than where it was.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np

from ..errors import SAMError
from ..processing.mask_prompts import shift_mask
from .embedding_source import Embeddings
from .volume import (
    ProgressCallback,
    SlicePropagator,
    accept,
    check_parameters,
    check_volume,
    default_contrast_limits,
    split_prompts,
)


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([ys.mean(), xs.mean()])


def track_object(
    model: Any,
    frames: np.ndarray,
    prompts: Mapping[int, Mapping[str, Any]],
    projection: str = "mask",
    iou_threshold: float = 0.5,
    box_extension: float = 0.05,
    motion_smoothing: float = 0.5,
    embeddings: Embeddings | None = None,
    progress: ProgressCallback | None = None,
    contrast_limits: tuple[float, float] | None = None,
    frame_key: Callable[[int], Hashable] | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    halo: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Follow one object forward in time from prompts on one or more frames.

    The first prompted frame is segmented from its prompts; every later frame
    is prompted from the previous frame's mask (see ``projection``) after
    shifting that mask by the smoothed motion.  The motion is the shift of the
    mask's centroid between the last two frames, smoothed as
    ``motion = motion_smoothing * motion + (1 - motion_smoothing) * shift``.
    A later prompted frame is segmented from its own prompts (a correction)
    and the track goes on from there.  The track stops where the mask is
    empty, where its IoU with the shifted previous mask is below
    ``iou_threshold``, at a frame whose only prompt is one negative point (a
    stop marker) or at the last frame; after a stop it starts again at the
    next prompted frame, if any.

    Args:
        model: a :class:`~napari_sam_keras.SAMNetwork` or a
            :class:`~napari_sam_keras.SAMPredictor`.
        frames: (T, Y, X) or (T, Y, X, 3) of any numeric dtype.
        prompts: ``{t: {"point_coords", "point_labels", "box"}}`` as in
            :func:`~napari_sam_keras.segment_volume`.
        projection, iou_threshold, box_extension, embeddings, progress,
        contrast_limits, tile_shape, halo: as in :func:`~napari_sam_keras.segment_volume`
            (``total`` counts the frames from the first prompted one to the end).
        motion_smoothing: weight (0..1) of the previous motion estimate; 0
            uses the last shift only, 1 never updates (no motion model).
        frame_key: ``frame_key(t)`` -> key of frame t's embedding in
            ``embeddings`` (default: a digest of its pixels and the model).

    Returns:
        (T, Y, X) bool: the object in every frame it was followed to; frames
        before the first prompted one are empty.
    """
    frames = check_volume(frames, what="time-lapse", axis="T")
    check_parameters(projection, iou_threshold, box_extension)
    if not 0.0 <= float(motion_smoothing) <= 1.0:
        raise SAMError(f"motion_smoothing must be between 0 and 1, got {motion_smoothing}.")
    count, height, width = frames.shape[:3]
    checked, stops = split_prompts(prompts, count, (height, width), "T")
    limits = default_contrast_limits(frames, contrast_limits)
    first = min(checked)
    engine = SlicePropagator(
        model, frames, limits, embeddings, progress, frame_key, count - first, tile_shape, halo
    )

    def work() -> np.ndarray:
        masks = np.zeros((count, height, width), bool)
        previous: np.ndarray | None = None
        motion = np.zeros(2)
        for t in range(first, count):
            if t in checked:
                new = engine.from_prompts(t, checked[t])
                if previous is not None and previous.any() and new.any():
                    motion = _smoothed(
                        motion, _centroid(new) - _centroid(previous), motion_smoothing
                    )
                else:
                    motion = np.zeros(2)
                previous = new if new.any() else None
                masks[t] = new
            elif previous is None or t in stops:
                previous = None
            else:
                moved = shift_mask(previous, motion)
                if not moved.any():  # moved out of the image
                    previous = None
                else:
                    new = engine.from_mask(t, moved, projection, box_extension)
                    if accept(moved, new, iou_threshold, f"frame {t}"):
                        shift = _centroid(new) - _centroid(previous)
                        motion = _smoothed(motion, shift, motion_smoothing)
                        masks[t] = previous = new
                    else:
                        previous = None
            engine.advance()
        return masks

    return engine.run(work)


def _smoothed(motion: np.ndarray, shift: np.ndarray, smoothing: float) -> np.ndarray:
    return smoothing * motion + (1.0 - smoothing) * shift
