"""Layer drop-downs for the widgets, filled from the viewer they belong to.

Also the rule by which a widget proposes a target: the Labels layer already
used for an image (:func:`labels_layer_for`).
"""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import ComboBox

from .image_slices import spatial_shape


class LayerComboBox(ComboBox):
    """A ComboBox of the viewer's layers of one type.

    Always truthy: magicgui's ``Container.labels`` setter tests the truth of
    whatever it finds under that name (see :class:`~.widget_base.SAMWidget`).
    """

    def __bool__(self) -> bool:
        return True


def layer_combo(
    viewer,
    name: str,
    kind,
    *,
    nullable: bool = False,
    label: str | None = None,
    exclude: Callable[[], tuple] = tuple,
    tooltip: str | None = None,
) -> LayerComboBox:
    """A drop-down of ``viewer``'s layers that are instances of ``kind`` (minus ``exclude()``)."""

    def choices(_widget=None):
        skip = exclude()
        return [
            (layer.name, layer)
            for layer in viewer.layers
            if isinstance(layer, kind) and not any(layer is s for s in skip)
        ]

    return LayerComboBox(
        name=name, label=label or name, choices=choices, nullable=nullable, tooltip=tooltip
    )


def named(viewer, kind, name: str):
    """The topmost ``kind`` layer called ``name``, or ``None``."""
    found = [layer for layer in viewer.layers if isinstance(layer, kind) and layer.name == name]
    return found[-1] if found else None


def sam_labels_name(image) -> str:
    """The name of the Labels layer the widgets create for ``image``."""
    return f"{image.name} SAM labels"


def needs_target(viewer, target, image) -> bool:
    """Whether a target should be proposed: none chosen, gone, or not of ``image``'s shape."""
    if target is None or target not in viewer.layers:
        return True
    return image is not None and tuple(target.data.shape) != spatial_shape(image)


def labels_layer_for(viewer, image, exclude: tuple = ()):
    """The Labels layer already used for ``image``, or ``None``.

    The one the widgets created for it (``"<image> SAM labels"``), else the
    topmost Labels layer of the image's spatial shape.
    """
    from napari.layers import Labels

    if image is None:
        return None
    candidates = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels)
        and not any(layer is e for e in exclude)
        and tuple(layer.data.shape) == spatial_shape(image)
    ]
    own = [layer for layer in candidates if layer.name == sam_labels_name(image)]
    if own:
        return own[-1]
    return candidates[-1] if candidates else None
