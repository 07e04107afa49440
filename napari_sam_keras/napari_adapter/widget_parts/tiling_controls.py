"""The tile shape and halo controls of both widgets (a tile shape of 0: no tiling)."""

from __future__ import annotations

from dataclasses import dataclass

from magicgui.widgets import SpinBox

from ..jobs.slice_embedding import Tiling


@dataclass
class TilingControls:
    """``tile_shape`` (0: off) and ``halo``, passed to ``set_image`` or the mask generator."""

    tile_shape: SpinBox
    halo: SpinBox

    @property
    def widgets(self) -> list:
        return [self.tile_shape, self.halo]

    def tiling(self) -> Tiling:
        """(tile shape, halo), or None when the tile shape is 0."""
        tile = int(self.tile_shape.value)
        return None if tile <= 0 else (tile, int(self.halo.value))

    def follow(self, _value=None) -> None:
        """The halo is used only with a tile shape."""
        self.halo.enabled = int(self.tile_shape.value) > 0

    @property
    def visible(self) -> bool:
        return bool(self.tile_shape.visible)

    @visible.setter
    def visible(self, value: bool) -> None:
        for widget in self.widgets:
            widget.visible = value


def tiling_controls() -> TilingControls:
    """The two spin boxes, tiling off; the halo follows the tile shape."""
    controls = TilingControls(
        tile_shape=SpinBox(
            name="tile_shape",
            label="tile shape",
            value=0,
            min=0,
            max=100_000,
            step=64,
            tooltip="0: the slice is embedded whole (shrunk to the model's input size). Else "
            "the slice is cut into square tiles of this many pixels, each embedded at full "
            "resolution with its halo: small cells in large images stay visible. A click is "
            "answered by its tile; the mask comes back at full resolution.",
        ),
        halo=SpinBox(
            name="halo",
            label="tile halo",
            value=64,
            min=0,
            max=100_000,
            step=16,
            tooltip="Pixels of the neighbouring tiles embedded with each tile: an object on a "
            "tile border is whole while it fits in the tile plus its halo. Choose more than "
            "the largest object's radius.",
        ),
    )
    controls.tile_shape.changed.connect(controls.follow)
    controls.follow()
    return controls
