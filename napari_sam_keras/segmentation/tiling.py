"""Tiling: cut a large image into tiles with a halo, and map prompts and masks between frames.

SAM sees ``image_size`` (1024) pixels a side; a 6000 x 6000 image given whole is
shrunk six-fold and small cells vanish.  With a tile shape, the image is cut
into blocks of ``tile_shape`` (the *inner* tiles, which cover the image without
overlap); each block is embedded together with ``halo`` pixels of its
neighbours on every side (the *outer* tile, clipped at the image edge).

* A prompt is answered by the tile whose inner block holds the prompts'
  centroid; the prompts are shifted into that tile's outer frame and the mask
  is pasted back into the full image.  An object is whole as long as it lies
  inside that tile plus its halo: choose a halo larger than the largest
  object's radius.
* The image is read tile by tile (``image[y0:y1, x0:x1]``), so a lazy array
  (dask, zarr, a memory map) is never loaded whole.

Coordinates: boxes here are ``(y0, y1, x0, x1)`` with exclusive ends, prompts
are (x, y) pixels as everywhere in the package.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ImageError, PromptError
from ..processing.images import to_rgb_uint8


class TilingWarning(UserWarning):
    """Prompts had to be dropped or clipped to fit the tile that answers them."""


def as_pair(value: int | tuple[int, int] | list[int] | None, name: str, minimum: int) -> tuple:
    """``value`` as a (rows, columns) pair of ints >= ``minimum`` (an int means square)."""
    if value is None:
        return None
    if isinstance(value, int | np.integer):
        value = (int(value), int(value))
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ImageError(f"{name} must be an int or a pair of ints, got {value!r}.") from err
    if len(pair) != 2 or any(v != w for v, w in zip(pair, value, strict=False)):
        raise ImageError(f"{name} must be an int or a pair of ints, got {value!r}.")
    if min(pair) < minimum:
        raise ImageError(f"{name} must be at least {minimum} pixels, got {pair}.")
    return pair


@dataclass(frozen=True)
class Tile:
    """One tile: its inner block and its outer (halo-grown, clipped) block, (y0, y1, x0, x1)."""

    index: int
    inner: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    @property
    def offset(self) -> tuple[int, int]:
        """(row, column) of the outer block's top-left pixel in the image."""
        return self.outer[0], self.outer[2]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the outer block: the image the encoder sees."""
        y0, y1, x0, x1 = self.outer
        return y1 - y0, x1 - x0

    @property
    def crop_box(self) -> list[int]:
        """The outer block as an XYXY crop box (exclusive end), as the mask generator uses."""
        y0, y1, x0, x1 = self.outer
        return [x0, y0, x1, y1]


class TileGrid:
    """The tiles of an image of ``image_shape`` (H, W) cut into ``tile_shape`` blocks.

    Args:
        image_shape: (H, W) of the image.
        tile_shape: (h, w) of the inner tiles (an int means square); the last
            row and column of tiles are smaller where the image does not
            divide evenly.
        halo: (rows, columns) added on each side of a tile (an int means the
            same on both axes; None means 0), clipped at the image edge.
    """

    def __init__(
        self,
        image_shape: tuple[int, int],
        tile_shape: int | tuple[int, int],
        halo: int | tuple[int, int] | None = None,
    ) -> None:
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.tile_shape = as_pair(tile_shape, "tile_shape", 1)
        self.halo = as_pair(halo, "halo", 0) or (0, 0)
        h, w = self.image_shape
        th, tw = self.tile_shape
        self.grid_shape = (math.ceil(h / th), math.ceil(w / tw))
        tiles = []
        for r in range(self.grid_shape[0]):
            for c in range(self.grid_shape[1]):
                inner = (r * th, min(h, (r + 1) * th), c * tw, min(w, (c + 1) * tw))
                outer = (
                    max(0, inner[0] - self.halo[0]),
                    min(h, inner[1] + self.halo[0]),
                    max(0, inner[2] - self.halo[1]),
                    min(w, inner[3] + self.halo[1]),
                )
                tiles.append(Tile(len(tiles), inner, outer))
        self.tiles: list[Tile] = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def __getitem__(self, index: int) -> Tile:
        return self.tiles[index]

    def __repr__(self) -> str:
        return (
            f"TileGrid(image_shape={self.image_shape}, tile_shape={self.tile_shape}, "
            f"halo={self.halo}, tiles={len(self)})"
        )

    def tile_at(self, x: float, y: float) -> Tile:
        """The tile whose inner block holds pixel (x, y) (clamped into the image)."""
        h, w = self.image_shape
        row = int(min(max(math.floor(y), 0), h - 1)) // self.tile_shape[0]
        col = int(min(max(math.floor(x), 0), w - 1)) // self.tile_shape[1]
        return self.tiles[row * self.grid_shape[1] + col]

    def tile_for_prompt(self, points_xy: np.ndarray | None, box: np.ndarray | None) -> Tile:
        """The tile that answers a prompt: the one holding the centroid of its coordinates.

        The centroid is that of the positive points and the box centre (all
        points when none is positive, as negative points alone say nothing of
        where the object is).
        """
        coords = []
        if points_xy is not None and len(points_xy):
            coords.append(np.asarray(points_xy, np.float64).reshape(-1, 2))
        if box is not None:
            b = np.asarray(box, np.float64).reshape(4)
            coords.append(np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]]))
        if not coords:
            raise PromptError("No prompt: give points or a box.")
        cx, cy = np.concatenate(coords).mean(axis=0)
        return self.tile_at(cx, cy)


def centroid_points(point_coords, point_labels) -> np.ndarray | None:
    """The points that place an object: the positive ones, or all if none is positive."""
    if point_coords is None:
        return None
    pts = np.asarray(point_coords, np.float64).reshape(-1, 2)
    if point_labels is None:
        return pts
    positive = np.asarray(point_labels).reshape(-1) == 1
    return pts[positive] if positive.any() else pts


def prompts_into_tile(
    tile: Tile,
    point_coords: np.ndarray | None,
    point_labels: np.ndarray | None,
    box: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Shift one object's prompts from image pixels into ``tile``'s outer frame.

    Points outside the outer tile are dropped and a box is clipped to it, each
    with a :class:`TilingWarning` (the object is larger than tile + halo).
    """
    oy, ox = tile.offset
    th, tw = tile.shape
    shift = np.array([ox, oy], np.float64)
    if point_coords is not None:
        pts = np.asarray(point_coords, np.float64).reshape(-1, 2) - shift
        labels = np.asarray(point_labels).reshape(-1)
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= tw) & (pts[:, 1] >= 0) & (pts[:, 1] <= th)
        if not inside.all():
            warnings.warn(
                f"{int((~inside).sum())} of {len(pts)} points lie outside tile {tile.index} "
                f"(with its halo) that answers this prompt and were dropped: use a larger "
                "tile_shape or halo for objects this large.",
                TilingWarning,
                stacklevel=3,
            )
        pts, labels = pts[inside], labels[inside]
        point_coords, point_labels = (pts, labels) if len(pts) else (None, None)
    if box is not None:
        b = np.asarray(box, np.float64).reshape(4) - np.array([ox, oy, ox, oy])
        clipped = np.clip(b, 0, [tw, th, tw, th])
        if not np.array_equal(clipped, b):
            warnings.warn(
                f"The box reaches beyond tile {tile.index} (with its halo) that answers it and "
                "was clipped to it: use a larger tile_shape or halo for objects this large.",
                TilingWarning,
                stacklevel=3,
            )
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            box = None
        else:
            box = clipped
    if point_coords is None and box is None:
        raise PromptError(
            f"The prompts of this object lie outside tile {tile.index} (with its halo) that "
            "holds their centroid: give prompts that lie closer together, or use a larger "
            "tile_shape or halo."
        )
    if point_labels is not None and box is None and not (point_labels == 1).any():
        raise PromptError(
            f"Only background points of this object lie in tile {tile.index} (with its halo): "
            "use a larger tile_shape or halo."
        )
    return point_coords, point_labels, box


def paste(tile_masks: np.ndarray, tile: Tile, image_shape: tuple[int, int]) -> np.ndarray:
    """Masks (..., h, w) of ``tile``'s outer frame as (..., H, W) image-size masks.

    Outside the tile, boolean masks are False and logits are the lowest finite
    float (below any threshold).
    """
    tile_masks = np.asarray(tile_masks)
    lead = tile_masks.shape[:-2]
    fill = False if tile_masks.dtype == bool else np.finfo(tile_masks.dtype).min
    out = np.full((*lead, *image_shape), fill, dtype=tile_masks.dtype)
    y0, y1, x0, x1 = tile.outer
    out[..., y0:y1, x0:x1] = tile_masks
    return out


class PlaneView:
    """Plane ``z`` of a lazy stack, still lazy: slicing it reads only what is asked for."""

    def __init__(self, data: Any, z: int) -> None:
        self.data, self.z = data, int(z)
        self.shape = tuple(int(s) for s in data.shape[1:])
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self.data[(self.z, *key)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.asarray(self.data[self.z])
        return out if dtype is None else out.astype(dtype)


def plane_of(data: Any, z: int) -> Any:
    """Plane ``z`` of a stack: a numpy view, or a :class:`PlaneView` of a lazy array."""
    if isinstance(data, np.ndarray):
        return data[z]
    return PlaneView(data, z)


def _channels(block: np.ndarray) -> np.ndarray:
    """The channels :func:`to_rgb_uint8` uses (grey, or the first three of RGB(A))."""
    if block.ndim == 3 and block.shape[-1] == 1:
        return block[..., 0]
    if block.ndim == 3 and block.shape[-1] == 4:
        return block[..., :3]
    return block


class TiledImage:
    """A 2D image (grey, RGB or RGBA; numpy or lazy) read and converted tile by tile.

    The conversion to RGB uint8 is that of the whole image: when no
    ``contrast_limits`` are given for a non-uint8 image, the image's min and
    max are found in one pass over blocks of rows (never the whole image in
    memory), so every tile is mapped to 0..255 alike.

    Args:
        image: (H, W), (H, W, 3) or (H, W, 4) array-like that supports
            ``shape``, ``dtype`` and 2D slicing (numpy, dask, zarr, memmap).
        grid: the :class:`TileGrid` (its image shape must be the image's).
        contrast_limits: intensity range mapped to 0..255 (see
            :func:`~napari_sam_keras.processing.images.to_rgb_uint8`).
        image_format: "RGB" or "BGR".
    """

    def __init__(
        self,
        image: Any,
        grid: TileGrid,
        contrast_limits: tuple[float, float] | None = None,
        image_format: str = "RGB",
    ) -> None:
        if not hasattr(image, "shape") or not hasattr(image, "dtype"):
            image = np.asarray(image)
        shape = tuple(int(s) for s in image.shape)
        if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
            raise ImageError(
                f"Expected a 2D grayscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4) image, got "
                f"shape {shape}. For a stack, pass one 2D slice at a time."
            )
        if tuple(grid.image_shape) != shape[:2]:
            raise ImageError(f"The tile grid is for {grid.image_shape}, the image is {shape[:2]}.")
        if image_format not in ("RGB", "BGR"):
            raise ImageError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}.")
        self.image = image
        self.grid = grid
        self.image_format = image_format
        dtype = np.dtype(image.dtype)
        if contrast_limits is None and dtype not in (np.uint8, np.bool_):
            contrast_limits = self._value_range()
        self.contrast_limits = contrast_limits

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.image_shape

    def row_blocks(self) -> Iterator[np.ndarray]:
        """The image as numpy blocks of whole rows (one row of tiles high)."""
        h = self.shape[0]
        step = self.grid.tile_shape[0]
        for y in range(0, h, step):
            yield np.asarray(self.image[y : y + step])

    def _value_range(self) -> tuple[float, float]:
        low, high = math.inf, -math.inf
        for block in self.row_blocks():
            block = _channels(block)
            if np.issubdtype(block.dtype, np.floating) and not np.all(np.isfinite(block)):
                raise ImageError(
                    "The image contains NaN or infinite values; fill or mask them first."
                )
            low, high = min(low, float(block.min())), max(high, float(block.max()))
        return low, high

    def rgb(self, tile: Tile) -> np.ndarray:
        """The tile's outer block as RGB uint8 (what the encoder sees)."""
        y0, y1, x0, x1 = tile.outer
        rgb = to_rgb_uint8(np.asarray(self.image[y0:y1, x0:x1]), self.contrast_limits)
        if self.image_format == "BGR":
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        return rgb
