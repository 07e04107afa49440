"""Opening an image file with its axes and pixel sizes: TIFF (OME-TIFF, ImageJ hyperstacks,
plain), OME-Zarr, and the formats without axis metadata (PNG, JPEG, ``.npy``, ...).

* TIFF: tifffile's first series gives the axes (``series.axes``: OME, ImageJ, or shaped
  TIFFs), its OME-XML (``PhysicalSize*``, ``TimeIncrement``) or ImageJ metadata
  (``spacing``, ``unit``, ``finterval`` and the X/Y resolution tags) the pixel sizes; the
  pixels stay in the file, read plane by plane through tifffile's zarr store.
* OME-Zarr (NGFF 0.4 and 0.5): the ``multiscales`` metadata gives the axes and the scale of
  each level; the pixels are the zarr array of the level asked for, read on demand.
* Anything else: the pixels (imageio, numpy) with axes guessed from the shape as before:
  (Y, X), (Y, X, 3|4) RGB(A), a leading Z.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from .image_axes import AxisImage, PlaneSelection, guess_axes, select_planes
from .ngff_metadata import is_ome_zarr, ngff_attributes

#: Unit spellings of OME-XML, ImageJ and NGFF, to NGFF (UDUNITS-2) names.
UNIT_NAMES = {
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometer": "micrometer",
    "nm": "nanometer",
    "nanometer": "nanometer",
    "mm": "millimeter",
    "millimeter": "millimeter",
    "cm": "centimeter",
    "centimeter": "centimeter",
    "m": "meter",
    "meter": "meter",
    "Å": "angstrom",
    "angstrom": "angstrom",
    "pm": "picometer",
    "picometer": "picometer",
    "s": "second",
    "sec": "second",
    "second": "second",
    "ms": "millisecond",
    "millisecond": "millisecond",
    "µs": "microsecond",
    "microsecond": "microsecond",
    "min": "minute",
    "minute": "minute",
    "h": "hour",
    "hour": "hour",
}
#: tifffile's axis letters for a leading axis of unknown meaning (a plain stack).
_UNKNOWN_AXES = "QIEHALPRVM"


def unit_name(unit: Any) -> str | None:
    """The NGFF name of a unit spelled the OME, ImageJ or NGFF way; None if unknown."""
    if unit is None:
        return None
    text = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ")
    return UNIT_NAMES.get(text) or UNIT_NAMES.get(text.lower())


def open_axis_image(path: str | Path, level: int = 0) -> AxisImage:
    """Open an image file or OME-Zarr folder with its axes and pixel sizes, reading no pixels
    where the format allows (TIFF, OME-Zarr, ``.npy``).

    ``level`` picks a multiscale level of an OME-Zarr image (0: full size).
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        if is_ome_zarr(path):
            return _open_ome_zarr(path, level)
        raise ImageError(f"{path} is a folder, not an image file or an OME-Zarr image")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _open_tiff(path)
    from .image_files import read_image

    data = _npy(path) if suffix == ".npy" else read_image(path)
    return AxisImage(data, guess_axes(data.shape), path)


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # the user's file
        raise ImageError(f"cannot read image {path}: {exc}") from exc


# --- TIFF -----------------------------------------------------------------------------------


def _open_tiff(path: Path) -> AxisImage:
    import tifffile
    import zarr

    from .image_files import tifffile_log_held

    try:
        with tifffile_log_held(), tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes if _has_axes(tif) else guess_axes(tuple(series.shape))
            shape = tuple(series.shape)
            if not shape or int(np.prod(shape)) == 0:
                raise ValueError("it holds no pixels (damaged?)")
            sizes = _tiff_pixel_sizes(tif, axes)
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        data = zarr.open(store, mode="r")
        if isinstance(data, zarr.Group):  # a pyramid: the full-size level
            data = data[sorted(data.array_keys())[0]]
    except ImageError:
        raise
    except Exception as exc:  # any reader failure is the user's file, not our bug
        raise ImageError(f"cannot read image {path}: {str(exc).splitlines()[0]}") from exc
    if tuple(data.shape) != shape:
        raise ImageError(f"cannot read image {path}: its series and pages disagree")
    return AxisImage(data, _tiff_axes(axes, shape, path), path, sizes)


def _has_axes(tif: Any) -> bool:
    """Whether the TIFF names its axes (OME, ImageJ, or a shaped TIFF written with axes);
    a plain TIFF's axes are guessed from its shape, as for any array."""
    if tif.is_ome or tif.is_imagej:
        return True
    meta = tif.shaped_metadata
    return bool(meta) and "axes" in meta[0]


def _tiff_axes(axes: str, shape: tuple[int, ...], path: Path) -> str:
    """tifffile's axis letters as ours: a leading axis of unknown meaning is Z (a stack)."""
    unknown = [a for a in axes if a in _UNKNOWN_AXES]
    if not unknown:
        return axes
    if len(unknown) == 1 and axes[0] in _UNKNOWN_AXES and "Z" not in axes:
        return "Z" + axes[1:]
    if "Y" not in axes:  # a shaped TIFF of another layout: guess from the shape
        return guess_axes(shape)
    raise ImageError(
        f"{path} has axes {axes} (shape {shape}) of unknown meaning ({''.join(unknown)}): "
        "save it as an OME-TIFF or ImageJ hyperstack with its axes"
    )


def _tiff_pixel_sizes(tif: Any, axes: str) -> dict[str, tuple[float, str | None]]:
    if tif.is_ome and tif.ome_metadata:
        sizes = _ome_xml_sizes(tif.ome_metadata)
        if sizes:
            return {a: s for a, s in sizes.items() if a in axes}
    if tif.is_imagej and tif.imagej_metadata is not None:
        return {a: s for a, s in _imagej_sizes(tif).items() if a in axes}
    return {}


def _ome_xml_sizes(xml: str) -> dict[str, tuple[float, str | None]]:
    import tifffile

    try:
        images = tifffile.xml2dict(xml)["OME"]["Image"]
        pixels = (images[0] if isinstance(images, list) else images)["Pixels"]
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    sizes = {}
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        if value:
            sizes[axis] = (float(value), unit_name(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
    if pixels.get("TimeIncrement"):
        unit = unit_name(pixels.get("TimeIncrementUnit", "s"))
        sizes["T"] = (float(pixels["TimeIncrement"]), unit)
    return sizes


def _imagej_sizes(tif: Any) -> dict[str, tuple[float, str | None]]:
    meta = tif.imagej_metadata
    unit = unit_name(meta.get("unit")) if meta.get("unit") else None
    sizes = {}
    tags = tif.pages.first.tags
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        value = tags.get(tag)
        if value is None:
            continue
        numerator, denominator = value.value
        if numerator and (numerator, denominator) != (1, 1):
            sizes[axis] = (denominator / numerator, unit)
    if meta.get("spacing"):
        sizes["Z"] = (float(meta["spacing"]), unit)
    if meta.get("finterval"):
        sizes["T"] = (float(meta["finterval"]), unit_name(meta.get("tunit", "s")) or "second")
    return sizes


# --- OME-Zarr -------------------------------------------------------------------------------


def _open_ome_zarr(path: Path, level: int) -> AxisImage:
    import zarr

    attrs = ngff_attributes(path)
    multiscale = attrs["multiscales"][0]
    datasets = multiscale["datasets"]
    if not -len(datasets) <= level < len(datasets):
        raise ImageError(f"{path} has {len(datasets)} levels: level {level} does not exist")
    dataset = datasets[level]
    try:
        data = zarr.open_array(str(path / dataset["path"]), mode="r")
    except Exception as exc:
        raise ImageError(f"cannot read the OME-Zarr image {path}: {exc}") from exc
    axes_meta = multiscale.get("axes") or [{"name": n} for n in "tczyx"[-data.ndim :]]
    names = [a["name"] if isinstance(a, dict) else a for a in axes_meta]
    letters = "".join(n.upper() if n.upper() in "TCZYX" else "?" for n in names)
    if "?" in letters or len(set(letters)) != len(letters):
        raise ImageError(f"{path}: OME-Zarr axes {names} are not among t, c, z, y, x")
    scale = _scale_of(multiscale, dataset, len(names))
    units = [unit_name(a.get("unit")) if isinstance(a, dict) else None for a in axes_meta]
    sizes = {
        letter: (float(s), u)
        for letter, s, u in zip(letters, scale, units, strict=True)
        if letter != "C"
    }
    return AxisImage(data, letters, path, sizes, ome_zarr_image=path, level=level)


def _scale_of(multiscale: dict, dataset: dict, ndim: int) -> list[float]:
    """The dataset's scale, times the multiscale's global scale if any."""
    scale = [1.0] * ndim
    for transforms in (
        dataset.get("coordinateTransformations"),
        multiscale.get("coordinateTransformations"),
    ):
        for transform in transforms or []:
            if transform.get("type") == "scale":
                scale = [a * float(b) for a, b in zip(scale, transform["scale"], strict=True)]
    return scale


def open_planes(
    path: str | Path,
    channel: int | None = None,
    z: int | None = None,
    t: int | None = None,
    stack: bool | None = False,
    stack_hint: str = "",
    level: int = 0,
) -> PlaneSelection:
    """:func:`open_axis_image` then :func:`~.image_axes.select_planes`: the plane(s) to
    segment, chosen by axis name, still unread (lazy) where the format allows."""
    return select_planes(
        open_axis_image(path, level=level), channel, z, t, stack=stack, stack_hint=stack_hint
    )
