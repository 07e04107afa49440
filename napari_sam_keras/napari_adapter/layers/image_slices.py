"""The 2D slice of an image layer that SAM sees, and how it maps back to the layer.

SAM segments 2D images.  For an nD image layer we take the slice shown in the
viewer: ``viewer.dims.point`` is in world coordinates (napari >= 0.5), so it is
mapped to the layer's data index with ``layer.world_to_data``.  RGB(A) layers
keep their colour axis; multiscale layers use full resolution, or the finest
level that fits ``max_side`` (the mask is scaled back to full resolution).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...errors import ImageError

#: Multiscale layers: use the finest pyramid level whose slice is at most this
#: many pixels along each side (SAM resizes to 1024 anyway).
DEFAULT_MAX_SIDE = 2048


@dataclass(frozen=True, eq=False)
class ImageSlice:
    """One 2D slice of an image layer, ready for SAM.

    Attributes:
        layer: the napari Image layer.
        data: the pixels at ``level``: (h, w) or (h, w, 3/4) for RGB(A).
        spatial_shape: the layer's full-resolution data shape, without a colour axis.
        slice_axes: the two layer axes of the slice (rows, columns), ascending.
        index: the slice's index on every layer axis, ``None`` on ``slice_axes``.
        level: the pyramid level of ``data`` (0 for full resolution).
        downsample: full-resolution pixels per ``data`` pixel along rows and columns.
        contrast_limits: the layer's contrast limits, mapped to 0..255 for SAM.
    """

    layer: object
    data: np.ndarray
    spatial_shape: tuple[int, ...]
    slice_axes: tuple[int, int]
    index: tuple[int | None, ...]
    level: int = 0
    downsample: tuple[float, float] = (1.0, 1.0)
    contrast_limits: tuple[float, float] | None = None

    @property
    def shape2d(self) -> tuple[int, int]:
        """(rows, columns) of the slice at full resolution."""
        r, c = self.slice_axes
        return int(self.spatial_shape[r]), int(self.spatial_shape[c])

    @property
    def plane(self) -> tuple[int, ...]:
        """The indices on the axes that are not ``slice_axes`` (the slice's "name")."""
        return tuple(int(i) for i in self.index if i is not None)

    @property
    def region(self) -> tuple:
        """Index expression selecting this slice from a full-resolution array."""
        return tuple(slice(None) if i is None else int(i) for i in self.index)

    @property
    def key(self) -> tuple:
        """What identifies these pixels: image layer, its data, slice, level, contrast limits."""
        layer = self.layer
        return (
            str(getattr(layer, "unique_id", id(layer))),
            id(layer.data),
            self.plane,
            self.slice_axes,
            self.level,
            self.contrast_limits,
        )

    def to_level_xy(self, xy: np.ndarray) -> np.ndarray:
        """(x, y) full-resolution pixel coordinates -> coordinates in ``data``."""
        xy = np.asarray(xy, dtype=np.float64)
        if self.level == 0:
            return xy
        f = np.array([self.downsample[1], self.downsample[0]])
        return (xy + 0.5) / f - 0.5

    def boxes_to_level(self, boxes: np.ndarray) -> np.ndarray:
        """(B, 4) x0, y0, x1, y1 boxes at full resolution -> in ``data`` pixels."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self.level == 0:
            return boxes
        pts = self.to_level_xy(boxes.reshape(-1, 2))
        return pts.reshape(-1, 4)

    def to_full_resolution(self, mask: np.ndarray) -> np.ndarray:
        """A 2D mask/label image at ``data`` resolution -> full-resolution slice (nearest)."""
        mask = np.asarray(mask)
        h, w = self.shape2d
        if mask.shape == (h, w):
            return mask
        rows = np.minimum((np.arange(h) / self.downsample[0]).astype(int), mask.shape[0] - 1)
        cols = np.minimum((np.arange(w) / self.downsample[1]).astype(int), mask.shape[1] - 1)
        return mask[np.ix_(rows, cols)]


def spatial_shape(layer) -> tuple[int, ...]:
    """The full-resolution data shape of an image layer without its colour axis."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(n) for n in data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def displayed_layer_axes(layer, dims) -> tuple[int, int]:
    """The two layer axes shown in a 2D view (ascending), from ``viewer.dims``."""
    if dims.ndisplay != 2:
        raise ImageError(
            "SAM segments 2D slices: switch the viewer to 2D display (the 2D/3D button, "
            "or Ctrl+Y) and try again."
        )
    offset = dims.ndim - layer.ndim
    axes = sorted(int(d) - offset for d in dims.displayed if int(d) - offset >= 0)
    if len(axes) != 2:
        raise ImageError(
            f"Layer {layer.name!r} has {layer.ndim} dimension(s); SAM needs a 2D image or "
            "a 2D view of an nD image."
        )
    return axes[0], axes[1]


def check_supported(layer) -> None:
    """Raise :class:`ImageError` for image layers SAM cannot segment as they are."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        raise ImageError(
            f"Layer {getattr(layer, 'name', layer)!r} is not an image layer; choose an Image "
            "layer to segment."
        )
    shape = spatial_shape(layer)
    if len(shape) < 2:
        raise ImageError(f"Image {layer.name!r} is 1D; SAM needs 2D images.")
    if not layer.rgb and len(shape) >= 3 and shape[-1] <= 4:
        raise ImageError(
            f"Image {layer.name!r} has shape {shape}: its last axis (length {shape[-1]}) looks "
            "like a channel axis, which SAM cannot use as an image axis. Split the channels "
            "(right-click the layer > Split Stack) or open the file with channel_axis, then "
            "segment one channel; RGB images should be opened as RGB."
        )
    dtype = np.dtype(layer.dtype) if hasattr(layer, "dtype") else layer.data.dtype
    if not (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_
    ):
        raise ImageError(f"Image {layer.name!r} has dtype {dtype}; SAM needs real numbers.")


def current_index(layer, dims, slice_axes: tuple[int, int]) -> tuple[int | None, ...]:
    """The layer index of the slice shown: ints on hidden axes, ``None`` on ``slice_axes``."""
    shape = spatial_shape(layer)
    position = np.asarray(layer.world_to_data(dims.point), dtype=np.float64)
    index: list[int | None] = []
    for axis, n in enumerate(shape):
        if axis in slice_axes:
            index.append(None)
            continue
        i = int(np.floor(position[axis] + 0.5))
        if not 0 <= i < n:
            raise ImageError(
                f"The viewer's current slice lies outside image {layer.name!r} (axis {axis}: "
                f"index {i}, the image has {n}). Move the slider onto the image."
            )
        index.append(i)
    return tuple(index)


def _choose_level(layer, slice_axes, max_side: int | None) -> int:
    if not getattr(layer, "multiscale", False) or max_side is None:
        return 0
    r, c = slice_axes
    for level, data in enumerate(layer.data):
        if max(int(data.shape[r]), int(data.shape[c])) <= max_side:
            return level
    return len(layer.data) - 1


def _level_index(layer, level: int, index, shape_at_level) -> tuple:
    if level == 0:
        return tuple(slice(None) if i is None else i for i in index)
    factors = np.asarray(layer.downsample_factors[level], dtype=np.float64)
    out = []
    for axis, i in enumerate(index):
        if i is None:
            out.append(slice(None))
        else:
            j = int(np.floor((i + 0.5) / factors[axis]))
            out.append(min(max(j, 0), int(shape_at_level[axis]) - 1))
    return tuple(out)


def make_slice(
    layer,
    index: tuple[int | None, ...],
    slice_axes: tuple[int, int],
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> ImageSlice:
    """The :class:`ImageSlice` of ``layer`` at ``index`` (hidden-axis indices)."""
    check_supported(layer)
    shape = spatial_shape(layer)
    level = _choose_level(layer, slice_axes, max_side)
    data = layer.data[level] if getattr(layer, "multiscale", False) else layer.data
    region = _level_index(layer, level, index, data.shape)
    pixels = np.asarray(data[region])
    r, c = slice_axes
    downsample = (shape[r] / pixels.shape[0], shape[c] / pixels.shape[1])
    limits = tuple(float(v) for v in layer.contrast_limits)
    return ImageSlice(
        layer=layer,
        data=pixels,
        spatial_shape=shape,
        slice_axes=(r, c),
        index=tuple(index),
        level=level,
        downsample=downsample,
        contrast_limits=limits,
    )


def current_slice(layer, dims, max_side: int | None = DEFAULT_MAX_SIDE) -> ImageSlice:
    """The slice of image ``layer`` shown in the viewer whose ``dims`` are given."""
    check_supported(layer)
    axes = displayed_layer_axes(layer, dims)
    return make_slice(layer, current_index(layer, dims, axes), axes, max_side)


def all_slice_indices(layer, slice_axes: tuple[int, int]) -> Iterator[tuple[int | None, ...]]:
    """Every index of ``layer`` along its hidden axes (for "segment every slice")."""
    shape = spatial_shape(layer)
    hidden = [a for a in range(len(shape)) if a not in slice_axes]
    for combo in itertools.product(*(range(shape[a]) for a in hidden)):
        index: list[int | None] = [None] * len(shape)
        for a, i in zip(hidden, combo, strict=True):
            index[a] = int(i)
        yield tuple(index)


def count_slices(layer, slice_axes: tuple[int, int]) -> int:
    shape = spatial_shape(layer)
    return int(np.prod([shape[a] for a in range(len(shape)) if a not in slice_axes], dtype=int))
