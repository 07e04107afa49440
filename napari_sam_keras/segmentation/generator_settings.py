"""The automatic mask generator's settings: their defaults and limits, written once.

:class:`SAMAutomaticMaskGenerator`, :func:`~napari_sam_keras.segment_batch`, the
command line (``auto``, ``batch``) and the automatic widget take their defaults
from :data:`DEFAULTS` and check values with :func:`check_generator_options`, so a
default changed here changes everywhere.  The defaults are the official
``SamAutomaticMaskGenerator``'s; a model may recommend its own
(:func:`settings_for_model`: the shipped demo model does, in its ``metadata.json``),
which the automatic widget shows when the model is loaded.  :func:`few_objects_hint`
names the setting to loosen when few objects were found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
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


def settings_for_model(network: Any) -> GeneratorSettings:
    """:data:`DEFAULTS` with the settings ``network`` recommends (its
    ``generator_defaults``, read from its model folder's ``metadata.json``).

    Raises:
        SAMError: the model recommends an unknown setting or an invalid value.
    """
    own = dict(getattr(network, "generator_defaults", None) or {})
    try:
        checked = check_generator_options(own)
    except SAMError as error:
        raise SAMError(f"The model {getattr(network, 'name', '')!r} recommends {error}") from None
    return replace(DEFAULTS, **checked)


#: Fewer objects than this make :func:`few_objects_hint` speak.
FEW_OBJECTS = 10

#: The filters that drop candidate masks, in the order a user should loosen them.
LOOSENED = ("pred_iou_thresh", "stability_score_thresh")


def few_objects_hint(
    found: int,
    dropped: Mapping[str, int],
    settings: Mapping[str, Any],
    few: int = FEW_OBJECTS,
) -> str:
    """A sentence naming the setting to loosen when the generator found few objects, or ``""``.

    Args:
        found: objects found (written).
        dropped: candidate masks each filter removed (``SAMAutomaticMaskGenerator.dropped``,
            summed over the slices): ``{"pred_iou_thresh": n, "stability_score_thresh": m}``.
        settings: the settings used (``pred_iou_thresh`` and so on).
        few: below this many objects the hint is given.

    The setting named is the filter that removed the most candidates; nothing is said
    when ``found`` is not small or no filter removed anything.
    """
    if found >= few:
        return ""
    counts = {name: int(dropped.get(name, 0)) for name in LOOSENED}
    name = max(LOOSENED, key=lambda n: counts[n])
    if counts[name] == 0:
        return ""
    value = float(settings.get(name, getattr(DEFAULTS, name)))
    lower = max(round(value - 0.15, 2), 0.0)
    return (
        f"Only {found} object(s) found: if some are missing, lower {name} (now {value:g}; "
        f"it rejected {counts[name]} candidate masks), e.g. to {lower:g}."
    )
