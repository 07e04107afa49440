"""Many (possibly overlapping) masks -> one label image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import SAMError
from ..processing.masks import area_from_rle, decode_segmentation, import_pycocotools_mask

OVERLAP_POLICIES = ("larger_first", "score", "first", "last")


def _area(obj: Any) -> int:
    if isinstance(obj, dict):
        if isinstance(obj.get("counts"), (str, bytes)):
            rle = dict(obj)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("utf-8")
            return int(import_pycocotools_mask().area(rle))
        return area_from_rle(obj)
    return int(np.count_nonzero(obj))


def _score(record: Any) -> float:
    if not isinstance(record, dict) or "predicted_iou" not in record:
        raise SAMError(
            "overlap='score' needs records with a 'predicted_iou' (from "
            "SAMAutomaticMaskGenerator.generate) or explicit scores=."
        )
    return float(record["predicted_iou"])


def masks_to_labels(
    records_or_masks: Sequence[Any] | np.ndarray,
    shape: tuple[int, int] | None = None,
    overlap: str = "larger_first",
    scores: Sequence[float] | None = None,
) -> np.ndarray:
    """Paint masks into one int32 label image; 0 is background.

    Args:
        records_or_masks: the records of
            :meth:`SAMAutomaticMaskGenerator.generate` (any ``output_mode``;
            COCO RLE needs pycocotools), or boolean masks: an (N, H, W) array
            or a list of (H, W) arrays.
        shape: (H, W) of the label image; needed when there are no masks,
            checked against the masks otherwise.
        overlap: which object a pixel covered by several masks gets:

            * ``"larger_first"`` (default): masks are painted from the largest
              area to the smallest, so an object lying on a larger one (a
              nucleus in a cell, a cell in a tissue region) stays visible.
              Equal areas are painted in input order (the later one wins).
            * ``"score"``: the mask with the higher ``predicted_iou`` (or the
              given ``scores``) wins; equal scores: the earlier one wins.
            * ``"first"``: the earlier mask in the input wins.
            * ``"last"``: the later mask in the input wins.
        scores: one score per mask for ``overlap="score"``, instead of the
            records' ``predicted_iou``.

    Returns:
        (H, W) int32 labels.  Mask ``i`` of the input (0-based, in the order
        given) always gets label ``i + 1``, whatever the overlap policy, so a
        label maps back to its record; a mask hidden entirely by others (or an
        empty one) leaves its label unused.
    """
    if overlap not in OVERLAP_POLICIES:
        raise SAMError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}.")
    if isinstance(records_or_masks, np.ndarray):
        if records_or_masks.ndim == 2:
            records_or_masks = records_or_masks[None]
        if records_or_masks.ndim != 3:
            raise SAMError(
                f"Masks must be an (N, H, W) array or a list of (H, W) arrays; got shape "
                f"{records_or_masks.shape}."
            )
    items = list(records_or_masks)
    if len(items) >= np.iinfo(np.int32).max:
        raise SAMError("Too many masks for an int32 label image.")
    segs = [r["segmentation"] if isinstance(r, dict) and "segmentation" in r else r for r in items]

    sizes = set()
    for seg in segs:
        if isinstance(seg, dict):
            sizes.add(tuple(int(v) for v in seg["size"]))
        else:
            arr_shape = np.shape(seg)
            if len(arr_shape) != 2:
                raise SAMError(f"Each mask must be 2D (H, W); got shape {arr_shape}.")
            sizes.add(tuple(arr_shape))
    if shape is not None:
        shape = tuple(int(v) for v in shape)
        sizes.add(shape)
    if not sizes:
        raise SAMError("No masks: give shape=(H, W) to get an empty label image.")
    if len(sizes) > 1:
        raise SAMError(f"The masks (and shape) disagree in size: {sorted(sizes)}.")
    (shape,) = sizes

    n = len(items)
    if overlap == "larger_first":
        areas = np.array([_area(s) for s in segs], np.int64)
        order = np.argsort(-areas, kind="stable")
    elif overlap == "score":
        if scores is not None:
            values = np.asarray(scores, np.float64).reshape(-1)
            if len(values) != n:
                raise SAMError(f"Got {len(values)} scores for {n} masks.")
        else:
            values = np.array([_score(r) for r in items], np.float64)
        # paint low scores first; among equal scores the earlier mask last (it wins)
        order = np.lexsort((-np.arange(n), values))
    elif overlap == "first":
        order = np.arange(n)[::-1]
    else:
        order = np.arange(n)

    labels = np.zeros(shape, np.int32)
    for i in order:
        labels[decode_segmentation(segs[i])] = i + 1
    return labels
