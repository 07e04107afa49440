"""Instance labels from the decoder's foreground and distance maps (seeded watershed).

The method of torch-em's ``watershed_from_center_and_boundary_distances``,
written with scipy and scikit-image:

1. smooth both distance maps with a Gaussian (``distance_smoothing``);
2. foreground = foreground map > ``foreground_threshold`` (micro-sam smooths
   the foreground map first, ``foreground_smoothing``);
3. seeds = connected components (4-connectivity) of
   centre distance < ``center_distance_threshold`` and boundary distance <
   ``boundary_distance_threshold`` inside the foreground;
4. a seeded watershed on the boundary distances, restricted to the foreground;
5. objects smaller than ``min_size`` pixels are removed and the labels
   renumbered 1..N.

Both distance maps are 0 at an object's centre (or far from its boundary)
and 1 at its boundary and in the background.  The Gaussian uses a window of
3 sigma and mirrored borders, as vigra's ``gaussianSmoothing`` (torch-em calls
bioimage-cpp's; its borders were not compared numerically, so results can
differ from micro-sam's by a pixel at object edges near the image border).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from ..errors import SAMError


@dataclass(frozen=True)
class WatershedSettings:
    """Thresholds of the instance post-processing.

    The defaults are micro-sam's (``InstanceSegmentationWithDecoder.generate``,
    with the annotator's minimum object size of 100 pixels).
    """

    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_threshold: float = 0.5
    foreground_smoothing: float = 1.0
    distance_smoothing: float = 1.6
    min_size: int = 100

    def updated(self, **changes) -> WatershedSettings:
        """A copy with some values changed (``None`` values are ignored)."""
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise SAMError(
                f"Unknown watershed settings {sorted(unknown)}; use {sorted(asdict(self))}."
            )
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


#: micro-sam's per-model settings (``micro_sam/_model_settings.py``, ``AIS_SETTINGS``).
MODEL_SETTINGS: dict[str, WatershedSettings] = {
    "vit_t_lm": WatershedSettings(0.5, 0.5, distance_smoothing=2.0, min_size=100),
    "vit_b_lm": WatershedSettings(0.4, 0.5, distance_smoothing=2.0, min_size=100),
    "vit_l_lm": WatershedSettings(0.4, 0.4, distance_smoothing=1.6, min_size=100),
    "vit_h_lm": WatershedSettings(0.5, 0.5, distance_smoothing=1.4, min_size=100),
    "vit_t_em_organelles": WatershedSettings(0.4, 0.5, distance_smoothing=1.2, min_size=100),
    "vit_b_em_organelles": WatershedSettings(0.3, 0.4, distance_smoothing=1.2, min_size=100),
    "vit_l_em_organelles": WatershedSettings(0.3, 0.4, distance_smoothing=1.2, min_size=100),
    "vit_h_em_organelles": WatershedSettings(0.3, 0.4, distance_smoothing=1.2, min_size=100),
}


def settings_for_model(name: str | None) -> WatershedSettings:
    """micro-sam's settings for a model, recognised in its name or file name.

    ``".../vit_b_lm.pt"`` gets ``vit_b_lm``'s settings; names that match no
    known model get the defaults.
    """
    if name:
        text = str(name).replace("\\", "/").rsplit("/", 1)[-1].lower()
        for model_name in sorted(MODEL_SETTINGS, key=len, reverse=True):
            if model_name in text:
                return MODEL_SETTINGS[model_name]
    return WatershedSettings()


def gaussian_smoothing(image: np.ndarray, sigma: float) -> np.ndarray:
    """vigra-style Gaussian smoothing: a window of 3 sigma, mirrored borders, float32."""
    if sigma <= 0:
        return np.asarray(image, np.float32)
    return ndimage.gaussian_filter(
        np.asarray(image, np.float32), sigma=sigma, mode="mirror", truncate=3.0
    )


def remove_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Zero the objects with fewer than ``min_size`` pixels and renumber the rest 1..N."""
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel())
    keep = counts >= max(int(min_size), 1)
    keep[0] = False
    lut = np.zeros(len(counts), np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def watershed_from_center_and_boundary_distances(
    center_distances: np.ndarray,
    boundary_distances: np.ndarray,
    foreground_map: np.ndarray,
    center_distance_threshold: float = 0.5,
    boundary_distance_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    distance_smoothing: float = 1.6,
    min_size: int = 0,
) -> np.ndarray:
    """Instance labels (int32, 0 = background) from the three decoder maps (each (H, W)).

    Same arguments and defaults as torch-em's function of this name.
    """
    center = np.asarray(center_distances, np.float32)
    boundary = np.asarray(boundary_distances, np.float32)
    foreground = np.asarray(foreground_map, np.float32)
    if not (center.shape == boundary.shape == foreground.shape) or center.ndim != 2:
        raise SAMError(
            "The foreground and distance maps must be 2D arrays of one shape, got "
            f"{foreground.shape}, {center.shape}, {boundary.shape}."
        )
    if distance_smoothing > 0:
        center = gaussian_smoothing(center, distance_smoothing)
        boundary = gaussian_smoothing(boundary, distance_smoothing)
    fg_mask = foreground > foreground_threshold
    seeds = (center < center_distance_threshold) & (boundary < boundary_distance_threshold)
    seeds &= fg_mask
    markers, _ = ndimage.label(seeds)
    labels = watershed(boundary, markers=markers, mask=fg_mask)
    return remove_small_objects(labels, min_size).astype(np.int32, copy=False)


def instance_labels(maps: np.ndarray, settings: WatershedSettings | None = None) -> np.ndarray:
    """Labels from (3, H, W) maps (foreground, centre distance, boundary distance).

    micro-sam's ``InstanceSegmentationWithDecoder.generate``: the foreground
    map is smoothed (``foreground_smoothing``), then
    :func:`watershed_from_center_and_boundary_distances`.
    """
    settings = settings or WatershedSettings()
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] != 3:
        raise SAMError(f"Expected (3, H, W) maps, got shape {maps.shape}.")
    foreground = gaussian_smoothing(maps[0], settings.foreground_smoothing)
    return watershed_from_center_and_boundary_distances(
        maps[1],
        maps[2],
        foreground,
        center_distance_threshold=settings.center_distance_threshold,
        boundary_distance_threshold=settings.boundary_distance_threshold,
        foreground_threshold=settings.foreground_threshold,
        distance_smoothing=settings.distance_smoothing,
        min_size=settings.min_size,
    )
