"""Turning a mask into SAM prompts: what carries an object from one slice or frame to the next.

Every function takes a 2D boolean mask in the image's own pixel frame and
returns prompts in that frame, as :meth:`SAMPredictor.predict` takes them
(points and boxes as x, y), except :func:`mask_to_low_res_logits`, which
returns the mask input in SAM's low-resolution grid of the padded input frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .prompt_rules import MIN_BOX_SIDE

#: The logit a binary mask input is set to (+ inside, - outside): logit(1 - 1e-3).
MASK_INPUT_LOGIT = float(np.log((1 - 1e-3) / 1e-3))


def mask_to_low_res_logits(
    mask: np.ndarray,
    input_size: tuple[int, int],
    image_size: int,
    low_res_size: int,
    logit: float = MASK_INPUT_LOGIT,
) -> np.ndarray:
    """A binary (H, W) mask as SAM's mask input: (low_res_size, low_res_size) float32 logits.

    The mask is resized like the image (longest side to ``image_size``, giving
    ``input_size``), padded at the bottom/right to ``image_size`` square, then
    averaged down to the low-res grid and re-binarised at one half; inside is
    ``+logit``, outside ``-logit``.
    """
    mask = np.asarray(mask, bool)
    h, w = mask.shape
    ih, iw = (int(v) for v in input_size)
    factor = image_size // low_res_size
    # the low-res cell (i, j) covers input pixels [i*f, (i+1)*f); map its centre back
    rows_in = min(low_res_size, -(-ih // factor))
    cols_in = min(low_res_size, -(-iw // factor))
    frac = np.zeros((low_res_size, low_res_size), np.float32)
    if rows_in and cols_in:
        # area fraction per cell: sample each cell at factor x factor sub-pixel centres
        sub = (np.arange(rows_in * factor) + 0.5) * (h / ih)
        sub_c = (np.arange(cols_in * factor) + 0.5) * (w / iw)
        r = np.clip(sub.astype(np.int64), 0, h - 1)
        c = np.clip(sub_c.astype(np.int64), 0, w - 1)
        inside_r = (np.arange(rows_in * factor) < ih)[:, None]
        inside_c = (np.arange(cols_in * factor) < iw)[None, :]
        fine = mask[np.ix_(r, c)] & inside_r & inside_c
        frac[:rows_in, :cols_in] = fine.reshape(rows_in, factor, cols_in, factor).mean(axis=(1, 3))
    return np.where(frac >= 0.5, logit, -logit).astype(np.float32)


def mask_box(mask: np.ndarray, extension: float = 0.0) -> np.ndarray:
    """The mask's bounding box (x0, y0, x1, y1), grown by ``extension`` of its size per side.

    The box is clipped to the image, and at least :data:`~.prompt_rules.MIN_BOX_SIDE`
    wide and high where the image allows (a one-pixel-wide mask gives a box with area, as
    the prompt rule requires).  ``mask`` must not be empty.
    """
    mask = np.asarray(mask, bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = float(rows[0]), float(rows[-1]), float(cols[0]), float(cols[-1])
    dy, dx = (y1 - y0 + 1) * extension, (x1 - x0 + 1) * extension
    h, w = mask.shape
    x0, x1 = _at_least_one_side(max(0.0, x0 - dx), min(w - 1.0, x1 + dx), w - 1.0)
    y0, y1 = _at_least_one_side(max(0.0, y0 - dy), min(h - 1.0, y1 + dy), h - 1.0)
    return np.array([x0, y0, x1, y1])


def _at_least_one_side(lo: float, hi: float, limit: float) -> tuple[float, float]:
    """[lo, hi] grown evenly to MIN_BOX_SIDE, kept inside [0, limit]."""
    short = MIN_BOX_SIDE - (hi - lo)
    if short <= 0:
        return lo, hi
    lo, hi = lo - short / 2, hi + short / 2
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > limit:
        lo, hi = max(0.0, lo - (hi - limit)), limit
    return lo, hi


def interior_point(mask: np.ndarray) -> np.ndarray:
    """The (x, y) of the mask pixel farthest from its edge (ties: the first in row order)."""
    distance = ndimage.distance_transform_edt(np.pad(np.asarray(mask, bool), 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([x, y], np.float64)


def _peaks(values: np.ndarray, region: np.ndarray, min_distance: int, most: int) -> np.ndarray:
    """(y, x) of up to ``most`` local maxima of ``values`` in ``region``, highest first."""
    size = 2 * min_distance + 1
    is_max = (values == ndimage.maximum_filter(values, size=size, mode="constant")) & region
    is_max &= values > 0
    ys, xs = np.nonzero(is_max)
    order = np.argsort(-values[ys, xs], kind="stable")
    chosen: list[tuple[int, int]] = []
    for i in order:  # plateaus give neighbouring maxima: keep them min_distance apart
        y, x = int(ys[i]), int(xs[i])
        if all(max(abs(y - a), abs(x - b)) > min_distance for a, b in chosen):
            chosen.append((y, x))
            if len(chosen) == most:
                break
    return np.array(chosen, np.int64).reshape(-1, 2)


def mask_points(
    mask: np.ndarray, max_positive: int = 4, max_negative: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Positive points inside the mask, negative points around it: ``(coords (N, 2) xy, labels)``.

    Positives are local maxima (at least 3 pixels apart) of the smoothed
    distance to the mask's edge; negatives are local maxima (at least 5 apart)
    of the distance to the mask in a band around it as wide as the mask's
    radius, so they sit on the background next to the object.  The interior
    maximum is always the first positive.
    """
    mask = np.asarray(mask, bool)
    inside = ndimage.gaussian_filter(
        ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1], 1.0
    )
    pos = _peaks(inside, mask, 3, max_positive)
    if len(pos) == 0:
        pos = interior_point(mask)[None, ::-1].astype(np.int64)
    outside = ndimage.distance_transform_edt(~mask)
    radius = max(2.0, float(np.sqrt(mask.sum() / np.pi)))
    band = (outside > 2) & (outside <= radius)
    neg = _peaks(np.where(band, outside, 0.0), band, 5, max_negative)
    coords = np.concatenate([pos, neg])[:, ::-1].astype(np.float64)
    labels = np.concatenate([np.ones(len(pos), np.int32), np.zeros(len(neg), np.int32)])
    return coords, labels


def shift_mask(mask: np.ndarray, shift_yx) -> np.ndarray:
    """The mask moved by (dy, dx) pixels (rounded), cut at the image edge."""
    mask = np.asarray(mask, bool)
    dy, dx = (int(round(float(v))) for v in shift_yx)
    out = np.zeros_like(mask)
    h, w = mask.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src = mask[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union
