"""Layer drop-downs for the widgets, filled from the viewer they belong to."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import ComboBox, Container


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


class SAMContainer(Container):
    """A magicgui ``Container`` whose ``labels`` is the target-Labels value widget.

    ``Container.labels`` is a bool (show labels next to widgets); the widgets'
    value widget of that name would otherwise be unreachable as an attribute.
    """

    @property
    def labels(self):
        """The ``labels`` (target Labels layer) value widget."""
        widgets = self.__dict__.get("_list")
        found = widgets.get_by_name("labels") if widgets is not None else None
        return found if found is not None else self._labels

    @labels.setter
    def labels(self, value: bool) -> None:
        Container.labels.fset(self, value)
