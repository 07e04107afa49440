"""The automatic mask generator's settings: their defaults and limits, written once.

:class:`SAMAutomaticMaskGenerator`, :func:`~napari_sam_keras.segment_batch`, the
command line (``auto``, ``batch``) and the automatic widget take their defaults
from :data:`DEFAULTS` and check values with :func:`check_generator_options`, so a
default changed here changes everywhere.  The defaults are the official
``SamAutomaticMaskGenerator``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import SAMError
from ..processing.prompt_rules import check_size, check_threshold


@dataclass(frozen=True)
class GeneratorSettings:
    """The generator's numeric settings (see :class:`SAMAutomaticMaskGenerator`)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The official defaults.
DEFAULTS = GeneratorSettings()

#: The lowest value each integer setting may take.
LOWEST = {
    "points_per_side": 1,
    "points_per_batch": 1,
    "crop_n_layers": 0,
    "min_mask_region_area": 0,
    "crop_n_points_downscale_factor": 1,
}


def check_generator_options(
    options: Mapping[str, Any], name: Callable[[str], str] = str
) -> dict[str, int | float]:
    """``options`` checked (known settings, numbers, within :data:`LOWEST`), as plain
    ints and floats sorted by name; ``None`` values are left out.

    ``name`` spells a setting in the message (``--points-per-side`` on the command line).

    Raises:
        SAMError: an unknown setting, a value that is not a number or one below its lowest
            (sizes: :data:`LOWEST`; the rest: finite and not negative, as
            :mod:`~napari_sam_keras.processing.prompt_rules` says for every front end).
    """
    unknown = sorted(set(options) - set(DEFAULTS.to_dict()))
    if unknown:
        raise SAMError(f"unknown generator option(s): {', '.join(unknown)}")
    checked: dict[str, int | float] = {}
    for key, value in sorted(options.items()):
        if value is None:
            continue
        if key in LOWEST:
            checked[key] = check_size(name(key), value, LOWEST[key])
        elif isinstance(value, bool) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise SAMError(f"generator option {name(key)} must be a number, got {value!r}")
        else:  # thresholds, offsets and ratios: finite, not negative (the one rule)
            checked[key] = check_threshold(name(key), value)
    return checked
