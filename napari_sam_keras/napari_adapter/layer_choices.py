"""Layer drop-downs for the widgets, filled from the viewer they belong to."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import ComboBox


def unwrap_viewer(viewer):
    """The real viewer behind napari's ``PublicOnlyProxy`` (plugins get a proxy)."""
    return getattr(viewer, "__wrapped__", viewer)


def resolve_viewer(viewer):
    """``viewer`` unwrapped, or the current napari viewer when ``None``."""
    if viewer is None:
        import napari

        viewer = napari.current_viewer()
        if viewer is None:
            raise RuntimeError("No napari viewer: pass one, or create napari.Viewer() first.")
    return unwrap_viewer(viewer)


class LayerComboBox(ComboBox):
    """A ComboBox of the viewer's layers of one type.

    Always truthy, so a :class:`~magicgui.widgets.Container` can expose it under
    the name ``labels`` (its own ``labels`` flag is tested for truth).
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
    """A drop-down of ``viewer``'s layers that are instances of ``kind``."""

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
