"""What the core accepts where it wants a model: a :class:`SAMNetwork` or a keras-cv SAM."""

from __future__ import annotations

from typing import Any

from ..errors import NotAModelError
from .network import SAMNetwork


def as_network(model: Any) -> SAMNetwork:
    """Accept a :class:`SAMNetwork` or a keras-cv ``SegmentAnythingModel``.

    Raises:
        NotAModelError: ``model`` is neither (also a ``TypeError``).
    """
    if isinstance(model, SAMNetwork):
        return model
    if hasattr(model, "backbone") and hasattr(model, "mask_decoder"):
        return SAMNetwork.from_keras_cv(model)
    raise NotAModelError(
        "Expected a SAMNetwork (from napari_sam_keras.load_model) or a keras-cv "
        f"SegmentAnythingModel, got {type(model).__name__}."
    )
