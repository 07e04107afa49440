"""An image with named axes and physical pixel sizes, and choosing its planes by axis name.

Readers (:mod:`.axis_readers`) return an :class:`AxisImage`: the pixels (a numpy array, or a
lazy array read on demand), one letter per axis from ``TCZYXS`` (time, channel, z, y, x,
and ``S`` for the samples of an RGB(A) pixel) and the pixel size of each axis with its unit
(NGFF unit names: ``micrometer``, ``second``, ...).

:func:`select_planes` reduces it to what SAM segments: one 2D grey or RGB(A) plane, or a
stack of them along Z or T, chosen by axis name (``--channel``, ``--z``, ``--t``).  Every
mismatch (an axis the file does not have, an index outside it, an axis left unchosen) is an
:class:`~napari_sam_keras.errors.ImageError` that names the file's axes, raised before
any pixel is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError

#: The axis letters an :class:`AxisImage` uses, and what each is called in messages.
AXIS_NAMES = {
    "T": "time",
    "C": "channel",
    "Z": "z",
    "Y": "y",
    "X": "x",
    "S": "RGB(A) sample",
}
#: The command-line flag that picks an index along each axis.
AXIS_FLAGS = {"C": "--channel", "Z": "--z", "T": "--t"}
#: NGFF axis types.
AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


@dataclass(frozen=True)
class AxisImage:
    """Pixels with named axes and physical pixel sizes.

    ``data`` has one dimension per letter of ``axes``; ``pixel_sizes`` maps an axis letter
    to ``(size, unit)`` (unit ``None`` when the file gives none), only for the axes the
    file describes.  ``ome_zarr_image`` is the OME-Zarr image group it was read from, if
    any (labels can be written into it), at multiscale level ``level``.
    """

    data: Any
    axes: str
    path: Path
    pixel_sizes: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    ome_zarr_image: Path | None = None
    level: int = 0

    def __post_init__(self) -> None:
        if len(self.axes) != len(self.data.shape):
            raise ImageError(
                f"{self.path}: axes {self.axes!r} do not match the shape {tuple(self.data.shape)}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    def describe(self) -> str:
        """``axes CZYX, shape (2, 5, 64, 64)``: for messages."""
        return f"axes {self.axes}, shape {self.shape}"

    def size(self, axis: str) -> int:
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1


@dataclass(frozen=True)
class PlaneSelection:
    """What :func:`select_planes` chose: ``data`` with ``axes`` (``YX``, ``YXS``, or a stack
    axis ``Z``/``T`` first), the pixel sizes of those axes, and the indices chosen."""

    data: Any
    axes: str
    pixel_sizes: dict[str, tuple[float, str | None]]
    chosen: dict[str, int]
    source: AxisImage

    @property
    def is_stack(self) -> bool:
        return self.axes[0] in "ZT"

    @property
    def label_axes(self) -> str:
        """The axes of the label image made from this selection (no samples axis)."""
        return self.axes.replace("S", "")

    def scale(self, axes: str | None = None) -> tuple[float, ...]:
        """Pixel size per axis of ``axes`` (default :attr:`label_axes`), 1.0 where unknown."""
        return tuple(self.pixel_sizes.get(a, (1.0, None))[0] for a in axes or self.label_axes)

    def units(self, axes: str | None = None) -> tuple[str | None, ...]:
        return tuple(self.pixel_sizes.get(a, (1.0, None))[1] for a in axes or self.label_axes)


def select_planes(
    image: AxisImage,
    channel: int | None = None,
    z: int | None = None,
    t: int | None = None,
    stack: bool | None = False,
    stack_hint: str = "",
) -> PlaneSelection:
    """Choose the plane(s) of ``image`` to segment, by axis name; read nothing.

    Args:
        image: the image with its axes.
        channel: index along the channel axis (``C``; for an RGB(A) image without one,
            along its samples ``S``: that sample alone, as grey).
        z, t: index along the Z / T axis.
        stack: ``False``: the result must be one plane; ``True``: a stack along the one
            Z or T axis left (a single plane is also accepted: check ``is_stack``);
            ``None``: either.
        stack_hint: added to the message when a stack is refused (e.g. how to segment
            every plane).

    Raises:
        ImageError: an axis given that the image does not have, an index outside its axis,
            or an axis of more than one plane left unchosen; the message names the axes.
    """
    wanted = {"C": channel, "Z": z, "T": t}
    fixed: dict[str, int] = {}
    where = f"{image.path} ({image.describe()})"
    for axis, index in wanted.items():
        if index is None:
            continue
        flag = AXIS_FLAGS[axis]
        target = axis
        if axis not in image.axes:
            if axis == "C" and image.size("S") > 1:
                target = "S"
            else:
                raise ImageError(
                    f"{flag} {index}: {where} has no {AXIS_NAMES[axis]} axis{_hint(image)}"
                )
        n = image.size(target)
        if not -n <= index < n:
            raise ImageError(f"{flag} {index} is outside 0..{n - 1} of {where}")
        fixed[target] = index % n
    left = [a for a in image.axes if a not in fixed and a not in "YXS" and image.size(a) > 1]
    if "C" in left:
        n = image.size("C")
        raise ImageError(f"{where} has {n} channels: choose one with --channel (0..{n - 1})")
    if image.size("S") not in (1, 3, 4) and "S" not in fixed:
        n = image.size("S")
        raise ImageError(
            f"{where} has {n} samples per pixel (not grey, RGB or RGBA): choose one with "
            f"--channel (0..{n - 1})"
        )
    if len(left) > 1 or (left and stack is False):
        raise ImageError(f"{where} is a stack: {_choose(image, left, stack)}{stack_hint}")
    # the axes of size 1 and unchosen are dropped (index 0); S of size 1 too
    for a in image.axes:
        if (
            a not in fixed
            and a not in left
            and a not in "YX"
            and not (a == "S" and image.size(a) > 1)
        ):
            fixed[a] = 0
    kept = [a for a in image.axes if a not in fixed]
    order = sorted(kept, key=lambda a: "ZTYXS".index(a))
    data = _select(
        image.data, [fixed.get(a) for a in image.axes], [image.axes.index(a) for a in order]
    )
    sizes = {a: image.pixel_sizes[a] for a in order if a in image.pixel_sizes}
    return PlaneSelection(
        data,
        "".join(order),
        sizes,
        {a: fixed[a] for a in fixed if a in "CZT" and image.size(a) > 1},
        image,
    )


def _hint(image: AxisImage) -> str:
    others = [a for a in image.axes if a in AXIS_FLAGS and image.size(a) > 1]
    if not others:
        return ": it is a single 2D image"
    return ": " + ", ".join(
        f"its {AXIS_NAMES[a]} axis ({image.size(a)}) is chosen with {AXIS_FLAGS[a]}" for a in others
    )


def _choose(image: AxisImage, left: list[str], stack: bool | None) -> str:
    parts = [f"{AXIS_FLAGS[a]} (0..{image.size(a) - 1})" for a in left]
    text = "choose a plane with " + " and ".join(parts)
    if stack is not False and len(left) > 1:
        text += f", leaving one of {', '.join(AXIS_NAMES[a] for a in left)} as the stack"
    return text


def _select(data: Any, index: list[int | None], order: list[int]) -> Any:
    """``data`` with the axes of an int in ``index`` fixed, the others in ``order``."""
    if isinstance(data, np.ndarray):
        key = tuple(slice(None) if i is None else i for i in index)
        kept = [a for a, i in enumerate(index) if i is None]
        return np.transpose(data[key], [kept.index(a) for a in order])
    if all(i is None for i in index) and order == sorted(order):
        return data
    return AxisView(data, index, order)


class AxisView:
    """A lazy array seen with some axes fixed and the others reordered: slicing it reads only
    what is asked for (``shape``, ``dtype``, ``ndim``, ``[...]`` and ``np.asarray``)."""

    def __init__(self, data: Any, index: list[int | None], order: list[int]) -> None:
        self.data, self.index, self.order = data, list(index), list(order)
        self.kept = [a for a, i in enumerate(index) if i is None]
        self.shape = tuple(int(data.shape[a]) for a in order)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        by_axis = dict(zip(self.order, key, strict=True))
        source = tuple(by_axis[a] if i is None else i for a, i in enumerate(self.index))
        block = np.asarray(self.data[source])
        remaining = [a for a in self.kept if not isinstance(by_axis[a], (int, np.integer))]
        wanted = [a for a in self.order if a in remaining]
        return np.transpose(block, [remaining.index(a) for a in wanted])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def guess_axes(shape: tuple[int, ...]) -> str:
    """Axes of an array without metadata: YX, YXS (last axis 3 or 4), and a leading Z."""
    ndim = len(shape)
    rgb = ndim >= 3 and shape[-1] in (1, 3, 4)
    tail = "YXS" if rgb else "YX"
    if ndim == len(tail):
        return tail
    if ndim == len(tail) + 1:
        return "Z" + tail
    raise ImageError(
        f"an image of shape {tuple(shape)} without axis metadata: expected (Y, X), "
        "(Y, X, 3|4) or a stack of them (Z, ...); save it as an OME-TIFF or ImageJ TIFF "
        "with its axes"
    )
