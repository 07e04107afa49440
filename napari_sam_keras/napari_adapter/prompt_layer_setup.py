"""The Points and Shapes layers that hold SAM prompts, styled and with shortcuts.

* Points: a ``label`` feature says ``positive`` or ``negative``; new points take
  ``feature_defaults['label']``.  Positive points are green, negative magenta.
* Shapes: rectangles are boxes (other shapes give their bounding box).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .image_slices import spatial_shape
from .prompts_from_layers import LABEL_FEATURE, NEGATIVE, POINT_TYPES, POSITIVE

POINTS_NAME = "SAM points"
BOXES_NAME = "SAM boxes"
POINT_COLOURS = {POSITIVE: "#32ff32", NEGATIVE: "#ff32ff"}


def _size_for(image) -> float:
    shape = spatial_shape(image)
    return float(max(3.0, round(max(shape[-2:]) / 40.0)))


def add_points_layer(viewer, image, name: str = POINTS_NAME):
    """An empty Points layer over ``image`` for positive/negative prompts, in add mode."""
    features = pd.DataFrame({LABEL_FEATURE: pd.Categorical([], categories=list(POINT_TYPES))})
    layer = viewer.add_points(
        np.empty((0, image.ndim)),
        ndim=image.ndim,
        name=name,
        scale=tuple(image.scale),
        translate=tuple(image.translate),
        features=features,
        feature_defaults={LABEL_FEATURE: POSITIVE},
        face_color=LABEL_FEATURE,
        face_color_cycle=POINT_COLOURS,
        border_color="white",
        border_width=0.1,
        size=_size_for(image),
    )
    layer.mode = "add"
    return layer


def add_boxes_layer(viewer, image, name: str = BOXES_NAME):
    """An empty Shapes layer over ``image`` for box prompts, in rectangle mode."""
    layer = viewer.add_shapes(
        ndim=image.ndim,
        name=name,
        scale=tuple(image.scale),
        translate=tuple(image.translate),
        edge_color="yellow",
        face_color="transparent",
        edge_width=max(1.0, _size_for(image) / 4),
    )
    layer.mode = "add_rectangle"
    return layer


def set_point_type(points_layer, point_type: str) -> None:
    """Make new points of ``points_layer`` positive or negative."""
    if point_type not in POINT_TYPES:
        raise ValueError(f"point type must be one of {POINT_TYPES}, got {point_type!r}")
    features = points_layer.features
    if LABEL_FEATURE not in features.columns:
        # a user's own Points layer: give it the feature (existing points are positive)
        points_layer.features = features.assign(
            **{
                LABEL_FEATURE: pd.Categorical(
                    [POSITIVE] * len(features), categories=list(POINT_TYPES)
                )
            }
        )
    defaults = points_layer.feature_defaults
    values = {c: defaults[c].iloc[0] for c in defaults.columns}
    values[LABEL_FEATURE] = point_type
    points_layer.feature_defaults = values
