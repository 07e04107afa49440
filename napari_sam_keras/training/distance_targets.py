"""The instance decoder's training targets, computed as torch-em computes them.

torch-em's ``PerObjectDistanceTransform(distances=True, boundary_distances=True,
foreground=True, min_size=...)`` (what micro-sam trains its decoder on),
written with scipy and scikit-image:

* the labels are split into connected components, objects below ``min_size``
  pixels removed;
* per object, in its bounding box: the distance to the object's inner
  boundary; the centre is the rounded centroid, or the point farthest from
  the boundary when the centroid lies outside the object;
* channel 1: the distance to that centre, channel 2: the maximum boundary
  distance minus the boundary distance; each divided by its maximum within
  the object, so both are 0 at the centre and about 1 at the edge;
* outside objects both are 1; channel 0 is the foreground (labels > 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

EPS = 1e-7


def distance_targets(labels: np.ndarray, min_size: int = 0) -> np.ndarray:
    """(H, W, 3) float32 targets of the (H, W) instance ``labels``: foreground, centre
    distance, boundary distance (channels last, the decoder's layout)."""
    labels = connected_components(np.asarray(labels), background=0, connectivity=1)
    if min_size > 0:
        ids, sizes = np.unique(labels, return_counts=True)
        labels[np.isin(labels, ids[(sizes < min_size) & (ids > 0)])] = 0
    boundaries = find_boundaries(labels, mode="inner")
    out = np.ones((*labels.shape, 3), np.float32)
    out[..., 0] = labels > 0
    for prop in regionprops(labels):
        bb = tuple(slice(prop.bbox[i], prop.bbox[i + 2]) for i in range(2))
        mask = prop.image
        centre = tuple(int(c) - b.start for c, b in zip(np.round(prop.centroid), bb, strict=True))
        boundary_distance = ndimage.distance_transform_edt(boundaries[bb] == 0)
        boundary_distance[~mask] = 0
        farthest = np.unravel_index(int(np.argmax(boundary_distance)), mask.shape)
        if not mask[centre]:
            centre = farthest
        seed = np.ones(mask.shape, bool)
        seed[centre] = False
        centre_distance = ndimage.distance_transform_edt(seed)
        inverted = boundary_distance[farthest] - boundary_distance
        for channel, values in ((1, centre_distance), (2, inverted)):
            values = np.where(mask, values, 0.0)
            values = values / (np.abs(values).max() + EPS)
            out[bb][..., channel][mask] = values[mask]
    return out
