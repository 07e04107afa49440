"""The Points and Shapes layers that hold SAM prompts, styled and with shortcuts.

* Points: a ``label`` feature says ``positive`` or ``negative``; new points take
  ``feature_defaults['label']``.  Positive points are green, negative magenta.
* Shapes: rectangles are boxes (other shapes give their bounding box).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .active_layer import keeping_active_layer
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


class PromptLayers:
    """The chosen prompt layers of a widget: set up for its image, watched, kept on top.

    Args:
        viewer: the napari viewer.
        points_picker, shapes_picker: the widget's ``points`` and ``shapes`` pickers.
        on_data: called (inside the layer's event) when prompts were added, moved or removed.
        keys: ``{key: callback}`` bound on both prompt layers.
        point_keys: ``{key: callback}`` bound on the points layer only.
    """

    def __init__(self, viewer, points_picker, shapes_picker, on_data, keys, point_keys) -> None:
        self.viewer = viewer
        self.points_picker = points_picker
        self.shapes_picker = shapes_picker
        self.on_data = on_data
        self.keys = keys
        self.point_keys = point_keys
        self._watched: dict[str, object] = {}

    @property
    def points(self):
        return self.points_picker.value

    @property
    def shapes(self):
        return self.shapes_picker.value

    def _ours_and_unfit(self, layer, image, name: str) -> bool:
        """Our own empty prompt layer made for an image of another dimensionality."""
        return (
            layer is not None
            and layer.name == name
            and len(layer.data) == 0
            and layer.ndim != image.ndim
        )

    def setup(self, image, reset_choices) -> None:
        """Choose the prompt layers for ``image``, once: ours by name, or new ones.

        Other Points/Shapes layers (annotations) are never taken as prompts
        unless chosen in the drop-downs.  The points layer becomes active when
        it is created.
        """
        from napari.layers import Points, Shapes

        from .layer_pickers import named

        viewer = self.viewer
        for picker, name in ((self.shapes_picker, BOXES_NAME), (self.points_picker, POINTS_NAME)):
            if self._ours_and_unfit(picker.value, image, name):
                viewer.layers.remove(picker.value)
                reset_choices()
        with keeping_active_layer(viewer):
            if self.shapes is None:
                shapes = named(viewer, Shapes, BOXES_NAME)
                if shapes is None or self._ours_and_unfit(shapes, image, BOXES_NAME):
                    shapes = add_boxes_layer(viewer, image)
                reset_choices()
                self.shapes_picker.value = shapes
        created = None
        with keeping_active_layer(viewer):
            if self.points is None:
                points = named(viewer, Points, POINTS_NAME)
                if points is None or self._ours_and_unfit(points, image, POINTS_NAME):
                    points = created = add_points_layer(viewer, image)
                reset_choices()
                self.points_picker.value = points
        if created is not None:
            viewer.layers.selection.active = created
        self.watch()

    def watch(self, _value=None) -> None:
        """Follow data events of the chosen prompt layers and bind the shortcuts."""
        for key, layer in (("points", self.points), ("shapes", self.shapes)):
            old = self._watched.get(key)
            if old is layer:
                continue
            if old is not None:
                old.events.data.disconnect(self.on_data)
            if layer is not None:
                layer.events.data.connect(self.on_data)
                extra = self.point_keys if key == "points" else {}
                for shortcut, callback in {**self.keys, **extra}.items():
                    layer.bind_key(shortcut, callback, overwrite=True)
            self._watched[key] = layer
