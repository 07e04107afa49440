"""Numpy helpers of the automatic mask generator.

Same semantics as the official ``segment_anything.utils.amg`` helpers (point
grids, crop boxes, stability score, boxes, non-maximum suppression, run-length
encoding, removal of small regions), written in numpy and vectorised.  Boxes
are XYXY with inclusive pixel coordinates (``x1`` is the last column of the
mask), as in the official code; the empty mask has the box ``[0, 0, 0, 0]``.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

import numpy as np

from ..errors import SAMError

# --- prompts and crops -------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) xy points evenly spaced in [0, 1]^2, cell centres, x varying fastest."""
    offset = 1.0 / (2 * n_per_side) if n_per_side > 0 else 0.0
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One point grid per crop layer; layer i has ``n_per_side / scale_per_layer**i`` per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY, exclusive end) and their layer: the whole image, then (2**i)**2 per layer."""
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    crop_boxes, layer_idxs = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n_crops = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops))
        crop_w = crop_len(im_w, n_crops, overlap)
        crop_h = crop_len(im_h, n_crops, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_crops)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_crops)]
        for x0, y0 in product(x0s, y0s):
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(i_layer + 1)
    return crop_boxes, layer_idxs


# --- scores and boxes --------------------------------------------------------------------


def stability_score(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """IoU of the masks thresholded at ``mask_threshold +- offset``, over the last two axes.

    Returns float32 (NaN where both masks are empty), like the official code.
    """
    logits = np.asarray(logits)
    axes = (-2, -1)
    inter = np.count_nonzero(logits > mask_threshold + offset, axis=axes)
    union = np.count_nonzero(logits > mask_threshold - offset, axis=axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(inter, np.float32) / np.asarray(union, np.float32)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """XYXY boxes (int64, inclusive) around boolean masks (..., H, W); zeros for empty masks."""
    masks = np.asarray(masks, bool)
    lead = masks.shape[:-2]
    h, w = masks.shape[-2:]
    flat = masks.reshape((-1, h, w))
    rows = flat.any(axis=2)
    cols = flat.any(axis=1)
    out = np.zeros((len(flat), 4), np.int64)
    if h and w:
        out[:, 0] = cols.argmax(axis=1)
        out[:, 1] = rows.argmax(axis=1)
        out[:, 2] = w - 1 - cols[:, ::-1].argmax(axis=1)
        out[:, 3] = h - 1 - rows[:, ::-1].argmax(axis=1)
        out[~rows.any(axis=1)] = 0
    return out.reshape(lead + (4,))


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of XYXY boxes as ``(x1 - x0) * (y1 - y0)`` (torchvision's definition)."""
    boxes = np.asarray(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.array(boxes, copy=True)
    boxes[..., 2] -= boxes[..., 0]
    boxes[..., 3] -= boxes[..., 1]
    return boxes


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, highest score first.

    Matches torchvision's ``nms`` (and ``batched_nms`` with a single category):
    boxes in float32, a stable descending sort of the scores, and a box is
    dropped when its IoU with a kept box is strictly above ``iou_threshold``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores)
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = boxes[order].T
    areas = (x1 - x0) * (y1 - y0)
    threshold = np.float64(iou_threshold)
    zero = np.float32(0)
    suppressed = np.zeros(n, bool)
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = slice(i + 1, n)
            w = np.maximum(zero, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
            h = np.maximum(zero, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            suppressed[rest] |= iou > threshold
    return order[np.asarray(keep, np.int64)]


def is_box_near_crop_edge(boxes: np.ndarray, crop_box, orig_box, atol: float = 20.0) -> np.ndarray:
    """True for boxes (crop frame) within ``atol`` of a crop edge that is not an image edge."""
    boxes = uncrop_boxes(np.asarray(boxes), crop_box).astype(np.float32)
    crop = np.asarray(crop_box, np.float32)[None]
    orig = np.asarray(orig_box, np.float32)[None]
    near_crop = np.abs(boxes - crop) <= atol
    near_image = np.abs(boxes - orig) <= atol
    return np.any(near_crop & ~near_image, axis=-1)


def uncrop_boxes(boxes: np.ndarray, crop_box) -> np.ndarray:
    x0, y0 = crop_box[:2]
    return np.asarray(boxes) + np.array([x0, y0, x0, y0], np.int64)


def uncrop_points(points: np.ndarray, crop_box) -> np.ndarray:
    x0, y0 = crop_box[:2]
    return np.asarray(points) + np.array([x0, y0], np.int64)


# --- run-length encoding -----------------------------------------------------------------


def _runs(flat: np.ndarray, n: int, offset: int = 0) -> list[int]:
    """Run lengths of a length-``n`` boolean vector that is False outside ``flat``.

    ``flat`` starts at ``offset``.  Runs alternate False/True starting with
    False, so the first count is 0 when the vector starts with True.
    """
    padded = np.concatenate([[False], flat, [False]])
    change = np.flatnonzero(padded[1:] != padded[:-1]) + offset
    counts = np.diff(np.concatenate([[0], change, [n]]).astype(np.int64))
    if counts.size > 1 and counts[-1] == 0:  # the vector ends with True
        counts = counts[:-1]
    return counts.tolist()


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of a 2D boolean mask: column-major runs, starting with a False run."""
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    return {"size": [h, w], "counts": _runs(mask.T.ravel(), h * w)}


def crop_mask_to_rle(crop: np.ndarray, y0: int, x0: int, shape: tuple[int, int]) -> dict[str, Any]:
    """:func:`mask_to_rle` of a mask given as ``crop`` placed at (y0, x0) in an image of ``shape``.

    Only the columns the crop spans are materialised.
    """
    h, w = shape
    ch, cw = crop.shape
    cols = np.zeros((cw, h), bool)
    cols[:, y0 : y0 + ch] = np.asarray(crop, bool).T
    return {"size": [h, w], "counts": _runs(cols.ravel(), h * w, offset=x0 * h)}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """The (H, W) boolean mask of an uncompressed RLE."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = (np.arange(len(counts)) % 2).astype(bool)
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise SAMError(f"RLE counts sum to {flat.size}, expected {h * w} for size {[h, w]}.")
    return flat.reshape(w, h).T


def area_from_rle(rle: dict[str, Any]) -> int:
    return int(sum(rle["counts"][1::2]))


def import_pycocotools_mask():
    """``pycocotools.mask``, or an ImportError saying how to install it."""
    try:
        from pycocotools import mask as coco_mask
    except ImportError as err:
        raise ImportError(
            "output_mode='coco_rle' needs the pycocotools package: pip install pycocotools "
            "(or use output_mode='uncompressed_rle' or 'binary_mask')."
        ) from err
    return coco_mask


def coco_encode_rle(uncompressed_rle: dict[str, Any]) -> dict[str, Any]:
    """Compressed COCO RLE (``counts`` as a str, JSON-ready) of an uncompressed RLE."""
    coco_mask = import_pycocotools_mask()
    h, w = uncompressed_rle["size"]
    rle = coco_mask.frPyObjects(uncompressed_rle, h, w)
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


def decode_segmentation(segmentation: Any) -> np.ndarray:
    """A record's ``segmentation`` (binary mask, uncompressed or COCO RLE) as a boolean mask."""
    if isinstance(segmentation, dict):
        counts = segmentation.get("counts")
        if isinstance(counts, (str, bytes)):
            coco_mask = import_pycocotools_mask()
            rle = dict(segmentation)
            if isinstance(counts, str):
                rle["counts"] = counts.encode("utf-8")
            return coco_mask.decode(rle).astype(bool)
        return rle_to_mask(segmentation)
    return np.asarray(segmentation, bool)


# --- small regions -----------------------------------------------------------------------


def _label8(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from skimage.measure import label

    return label(mask, connectivity=2, return_num=True)


def _largest_region(regions: np.ndarray, sizes: np.ndarray, origin=(0, 0)) -> int:
    """The label of the largest region (label > 0).

    Ties go to the region OpenCV's 8-connected labelling numbers first, as
    the official code uses it: OpenCV scans 2x2 pixel blocks in raster order.
    """
    biggest = np.flatnonzero(sizes[1:] == sizes[1:].max()) + 1
    if len(biggest) == 1:
        return int(biggest[0])
    rows, cols = np.nonzero(np.isin(regions, biggest))
    y0, x0 = origin  # where ``regions`` lies in the image
    block = ((rows + y0) // 2) * (regions.shape[1] + x0 + 2) + (cols + x0) // 2
    first = np.full(len(sizes), np.iinfo(np.int64).max)
    np.minimum.at(first, regions[rows, cols], block)
    return int(biggest[np.argmin(first[biggest])])


def _small_region_fill(regions, sizes, area_thresh: float, holes: bool, origin=(0, 0)):
    """Lookup table label -> new mask value (None when nothing is small), and the small labels."""
    small = np.flatnonzero(sizes[1:] < area_thresh) + 1
    if small.size == 0:
        return None, small
    if holes:  # the mask (label 0 of the inverted mask) plus the small background regions
        table = np.zeros(len(sizes), bool)
        table[0] = True
        table[small] = True
    else:  # the large regions, or the largest when every region is small
        table = np.ones(len(sizes), bool)
        table[0] = False
        table[small] = False
        if not table.any():
            table[_largest_region(regions, sizes, origin)] = True
    return table, small


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Remove small holes (``mode="holes"``) or islands (``"islands"``) from a 2D mask.

    Regions are 8-connected; a region is small when it has fewer than
    ``area_thresh`` pixels.  Background regions touching the image border count
    as holes too, and when every island is small the largest one is kept, as
    in the official code.  Returns ``(mask, changed)``; ``changed`` is True
    whenever a small region was found.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}.")
    mask = np.asarray(mask, bool)
    holes = mode == "holes"
    regions, n = _label8(mask ^ holes)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)
    table, _ = _small_region_fill(regions, sizes, area_thresh, holes)
    if table is None:
        return mask, False
    return table[regions], True


def _to_crop(mask: np.ndarray, y0: int = 0, x0: int = 0) -> tuple[np.ndarray, int, int]:
    """``mask`` cut to its bounding box, and the box's top-left corner (offset by y0, x0)."""
    box = masks_to_boxes(mask)
    return mask[box[1] : box[3] + 1, box[0] : box[2] + 1], y0 + int(box[1]), x0 + int(box[0])


def _remove_small_regions_full(crop, y0, x0, shape, area_thresh):
    full = np.zeros(shape, bool)
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    full, holes_changed = remove_small_regions(full, area_thresh, "holes")
    full, islands_changed = remove_small_regions(full, area_thresh, "islands")
    return (*_to_crop(full), holes_changed or islands_changed)


def remove_small_regions_in_crop(
    crop: np.ndarray, y0: int, x0: int, shape: tuple[int, int], area_thresh: float
) -> tuple[np.ndarray, int, int, bool]:
    """Small holes, then small islands, removed from a mask given as its bounding-box crop.

    Exactly :func:`remove_small_regions` with ``"holes"`` then ``"islands"`` on
    the full (H, W) = ``shape`` mask, but labels only the crop grown by one
    pixel: the background outside it is accounted for by its pixel count.
    Returns ``(crop, y0, x0, changed)`` with the new mask cut to its box.
    """
    h, w = shape
    crop = np.asarray(crop, bool)
    ch, cw = crop.shape
    if not crop.any():
        return _remove_small_regions_full(crop, y0, x0, shape, area_thresh)
    changed = False
    # Holes: label the background of the crop grown by a one-pixel ring (where
    # the image allows).  Background outside the grown crop (whole rows above
    # and below it, columns left and right of it) touches the ring and joins
    # the ring's region: add its pixel count there.
    ey0, ex0 = max(y0 - 1, 0), max(x0 - 1, 0)
    ey1, ex1 = min(y0 + ch + 1, h), min(x0 + cw + 1, w)
    grown = np.zeros((ey1 - ey0, ex1 - ex0), bool)
    grown[y0 - ey0 : y0 - ey0 + ch, x0 - ex0 : x0 - ex0 + cw] = crop
    regions, n = _label8(~grown)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)
    gh, gw = grown.shape
    outside = np.zeros_like(sizes)
    for count, where in (
        (ey0 * w, (0, 0)),
        ((h - ey1) * w, (gh - 1, 0)),
        (gh * ex0, (0, 0)),
        (gh * (w - ex1), (0, gw - 1)),
    ):
        if count:
            outside[regions[where]] += count
    table, small = _small_region_fill(regions, sizes + outside, area_thresh, holes=True)
    if table is not None:
        if outside[small].any():  # a small hole reaches outside the grown crop
            return _remove_small_regions_full(crop, y0, x0, shape, area_thresh)
        changed = True
        crop, y0, x0 = _to_crop(table[regions], ey0, ex0)
    # Islands: every island lies inside the crop.
    regions, n = _label8(crop)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)
    table, _ = _small_region_fill(regions, sizes, area_thresh, False, (y0, x0))
    if table is not None:
        changed = True
        crop, y0, x0 = _to_crop(table[regions], y0, x0)
    return crop, y0, x0, changed
