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
    whatever it finds under that name (see :class:`~..widget_parts.widget_base.SAMWidget`).
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
            if isinstance(layer, kind)
            and not is_sam_preview(layer)
            and not any(layer is s for s in skip)
        ]

    return LayerComboBox(
        name=name, label=label or name, choices=choices, nullable=nullable, tooltip=tooltip
    )


def named(viewer, kind, name: str):
    """The topmost ``kind`` layer called ``name``, or ``None``."""
    found = [layer for layer in viewer.layers if isinstance(layer, kind) and layer.name == name]
    return found[-1] if found else None


#: Set in the ``metadata`` of the layers that only show a preview: never a target.
PREVIEW_ROLE = {"napari_sam_keras": "preview"}


def is_sam_preview(layer) -> bool:
    """Whether ``layer`` is a preview layer of ours (marked from its creation on)."""
    metadata = getattr(layer, "metadata", None) or {}
    return metadata.get("napari_sam_keras") == "preview"


def sam_labels_name(image) -> str:
    """The name of the Labels layer the widgets create for ``image``."""
    return f"{image.name} SAM labels"


def needs_target(viewer, target, image) -> bool:
    """Whether a target should be proposed: none chosen, gone, or not belonging to ``image``."""
    if target is None or target not in viewer.layers:
        return True
    return image is not None and not belongs_to(viewer, target, image)


def belongs_to(viewer, labels, image) -> bool:
    """Whether the Labels layer ``labels`` can be ``image``'s target without surprise.

    Visible, of the image's spatial shape, scale and translation, not a preview, and not the
    ``"<other image> SAM labels"`` layer of another image in the viewer.
    """
    from napari.layers import Image

    others = {
        sam_labels_name(layer)
        for layer in viewer.layers
        if isinstance(layer, Image) and layer is not image
    } - {sam_labels_name(image)}
    return (
        labels.visible
        and not is_sam_preview(labels)
        and labels.name not in others
        and tuple(labels.data.shape) == spatial_shape(image)
        and _same_placement(labels, image)
    )


def labels_layer_for(viewer, image, exclude: tuple = ()):
    """The Labels layer already used for ``image``, or ``None``.

    Only a layer that :func:`belongs_to` the image: the one the widgets created for it
    (``"<image> SAM labels"``) comes first, else the topmost such layer.
    """
    from napari.layers import Labels

    if image is None:
        return None
    candidates = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels)
        and not any(layer is e for e in exclude)
        and belongs_to(viewer, layer, image)
    ]
    own = [layer for layer in candidates if layer.name == sam_labels_name(image)]
    if own:
        return own[-1]
    return candidates[-1] if candidates else None


def _same_placement(labels, image) -> bool:
    """Whether ``labels`` lies on ``image`` in the world: same scale and translation.

    (An RGB image layer's ``scale`` has no entry for its colour axis.)
    """
    import numpy as np

    return bool(
        np.allclose(np.asarray(labels.scale), np.asarray(image.scale))
        and np.allclose(np.asarray(labels.translate), np.asarray(image.translate))
    )
