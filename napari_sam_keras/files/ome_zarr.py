"""OME-Zarr label images through ome-zarr-py: NGFF 0.5 (Zarr v3) by default, 0.4 on request.

Two places a label image goes:

* its own OME-Zarr (:func:`write_ome_zarr_labels`): the label image (``multiscales`` +
  ``image-label``) at the group's root, for inputs that are not OME-Zarr (a TIFF);
* into the input's OME-Zarr image (:func:`write_labels_into_image`): ``IMAGE/labels/NAME``
  with ``image-label.source.image = "../../"``, listed in ``IMAGE/labels``, where NGFF
  readers (napari-ome-zarr, ome-zarr-py, MoBIE) look for an image's labels.  The image's
  own arrays and metadata are never written.

Both carry the pixel sizes and units (a ``scale`` coordinate transformation and the axes'
units) and a colour per label.  ome-zarr-py writes the arrays and the multiscale metadata;
each label image is written complete under a temporary name and renamed into place
(:mod:`.atomic_write`), the small ``labels`` group metadata written atomically after it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, SAMError
from .atomic_write import atomic_directory, atomic_write
from .image_axes import AXIS_TYPES

#: NGFF versions written; the first is the default.
NGFF_VERSIONS = ("0.5", "0.4")
DEFAULT_NGFF_VERSION = NGFF_VERSIONS[0]
#: Chunk edge along Y and X; a stack is chunked one plane at a time.
CHUNK = 1024

PixelSizes = dict[str, tuple[float, str | None]]


def _ome_zarr():
    try:
        from ome_zarr import format as formats
        from ome_zarr import writer
    except ImportError as exc:
        raise SAMError(
            "writing OME-Zarr needs ome-zarr-py: pip install 'napari-sam-keras[ome-zarr]'"
        ) from exc
    return formats, writer


def _format(version: str):
    formats, _ = _ome_zarr()
    if version not in NGFF_VERSIONS:
        raise SAMError(f"NGFF version {version!r} is not written: use {' or '.join(NGFF_VERSIONS)}")
    return formats.FormatV05() if version == "0.5" else formats.FormatV04()


def label_colors(labels: np.ndarray) -> list[dict[str, Any]]:
    """One ``{"label-value", "rgba"}`` per label present: a fixed, well spread colour per id."""
    values = np.unique(np.asarray(labels))
    colors = []
    for value in values[values > 0].tolist():
        hue = (value * 0.618033988749895) % 1.0
        r, g, b = (int(255 * _channel(hue + shift)) for shift in (0.0, 2 / 3, 1 / 3))
        colors.append({"label-value": int(value), "rgba": [r, g, b, 255]})
    return colors


def _channel(h: float) -> float:
    h = h % 1.0
    return min(1.0, max(0.0, abs(h * 6 - 3) - 1))


def _write_group(
    group_path: Path,
    labels: np.ndarray,
    axes: str,
    pixel_sizes: PixelSizes | None,
    version: str,
    image_label: dict[str, Any],
    attributes: dict[str, Any] | None,
) -> None:
    """A label image (multiscales + image-label) at ``group_path``, a new folder."""
    import zarr

    fmt = _format(version)
    _, writer = _ome_zarr()
    sizes = pixel_sizes or {}
    axes_meta = []
    for axis in axes.lower():
        entry = {"name": axis, "type": AXIS_TYPES[axis.upper()]}
        unit = sizes.get(axis.upper(), (1.0, None))[1]
        if unit is not None:
            entry["unit"] = unit
        axes_meta.append(entry)
    scale = [float(sizes.get(a, (1.0, None))[0]) for a in axes]
    chunks = tuple([1] * (labels.ndim - 2) + [min(CHUNK, n) or 1 for n in labels.shape[-2:]])
    group = zarr.open_group(str(group_path), mode="w-", zarr_format=fmt.zarr_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the scale-by-transform argument
        writer.write_multiscale(
            [labels],
            group,
            fmt=fmt,
            axes=axes_meta,
            coordinate_transformations=[[{"type": "scale", "scale": scale}]],
            storage_options={"chunks": chunks},
            name=group_path.name.removesuffix(".zarr").removesuffix(".ome"),
        )
    writer.add_metadata(group, {"image-label": {**image_label, "version": fmt.version}}, fmt=fmt)
    for key, value in (attributes or {}).items():
        group.attrs[key] = value


def write_ome_zarr_labels(
    path: str | Path,
    labels: np.ndarray,
    attributes: dict[str, Any] | None = None,
    pixel_sizes: PixelSizes | None = None,
    axes: str | None = None,
    version: str = DEFAULT_NGFF_VERSION,
) -> Path:
    """Write a label image as its own OME-Zarr folder at ``path``, atomically.

    ``axes`` (default YX / ZYX) names the dimensions; ``pixel_sizes`` (axis letter ->
    (size, unit)) becomes the scale and the units; ``attributes`` (JSON-serialisable) are
    stored in the group's attributes beside the OME metadata.
    """
    path = Path(path)
    labels = _check_labels(labels, axes)
    axes = axes or _default_axes(labels.ndim)
    with atomic_directory(path) as tmp:
        _write_group(
            tmp, labels, axes, pixel_sizes, version, {"colors": label_colors(labels)}, attributes
        )
    return path


def write_labels_into_image(
    image: str | Path,
    name: str,
    labels: np.ndarray,
    attributes: dict[str, Any] | None = None,
    pixel_sizes: PixelSizes | None = None,
    axes: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``labels`` as ``IMAGE/labels/NAME`` of the OME-Zarr image ``image`` (in the
    image's NGFF version), with ``source`` pointing to the image; return its path.

    The label image is written under a temporary name in ``IMAGE/labels`` and renamed; then
    ``NAME`` is added to the ``labels`` group's list.  An existing label image ``NAME`` is
    replaced only with ``overwrite``.  Nothing else of the image is written.
    """
    from .ngff_metadata import ngff_attributes

    image = Path(image)
    attrs = ngff_attributes(image)
    version = str(attrs.get("version") or attrs["multiscales"][0].get("version", "0.4"))
    if version not in NGFF_VERSIONS:
        raise ImageError(f"{image} is NGFF {version}: labels are written into 0.4 or 0.5 images")
    if not name or "/" in name or name.startswith("."):
        raise SAMError(f"{name!r} is not a label image name")
    labels = _check_labels(labels, axes)
    axes = axes or _default_axes(labels.ndim)
    group = image / "labels"
    target = group / name
    if target.exists() and not overwrite:
        raise SAMError(f"{target} exists: choose another name, or overwrite to replace it")
    group.mkdir(exist_ok=True)
    meta = {
        "colors": label_colors(labels),
        "source": {"image": "../../"},
    }
    with atomic_directory(target) as tmp:
        _write_group(tmp, labels, axes, pixel_sizes, version, meta, attributes)
    _add_to_labels_group(group, name, version)
    return target


def _add_to_labels_group(group: Path, name: str, version: str) -> None:
    """List ``name`` in the ``labels`` group's metadata (created if missing), atomically."""
    if version == "0.5":
        meta_path = group / "zarr.json"
        meta = _read_json(meta_path) or {"zarr_format": 3, "node_type": "group", "attributes": {}}
        ome = meta.setdefault("attributes", {}).setdefault("ome", {})
        ome["version"] = "0.5"
        listed = ome.setdefault("labels", [])
    else:
        if not (group / ".zgroup").exists():
            with atomic_write(group / ".zgroup") as tmp:
                tmp.write_text(json.dumps({"zarr_format": 2}))
        meta_path = group / ".zattrs"
        meta = _read_json(meta_path) or {}
        listed = meta.setdefault("labels", [])
    if name not in listed:
        listed.append(name)
    with atomic_write(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _default_axes(ndim: int) -> str:
    from .label_tiff import default_label_axes

    return default_label_axes(ndim)


def _check_labels(labels: np.ndarray, axes: str | None) -> np.ndarray:
    labels = np.ascontiguousarray(labels)
    if labels.ndim not in (2, 3, 4):
        raise ImageError(f"an OME-Zarr label image is 2D to 4D, not shape {labels.shape}")
    if axes is not None and len(axes) != labels.ndim:
        raise ImageError(f"axes {axes!r} do not match the label shape {labels.shape}")
    if labels.dtype.kind not in "ui":
        raise ImageError(f"labels must be integers, not {labels.dtype}")
    return labels


def read_ome_zarr_attributes(path: str | Path) -> dict[str, Any]:
    """The attributes of an OME-Zarr group (0.4 ``.zattrs``; 0.5 ``zarr.json`` attributes,
    the OME metadata under ``ome``)."""
    path = Path(path)
    meta = _read_json(path / "zarr.json")
    if meta is not None:
        return meta.get("attributes", {})
    meta = _read_json(path / ".zattrs")
    if meta is None:
        raise ImageError(f"{path} is not an OME-Zarr folder")
    return meta


def read_ome_zarr_labels(path: str | Path, level: int = 0) -> np.ndarray:
    """Level ``level`` of an OME-Zarr label (or image) group, as a numpy array."""
    import zarr

    from .ngff_metadata import ngff_attributes

    datasets = ngff_attributes(path)["multiscales"][0]["datasets"]
    if not 0 <= level < len(datasets):
        raise ImageError(f"{path} has no multiscale level {level}")
    return np.asarray(zarr.open_array(str(Path(path) / datasets[level]["path"]), mode="r")[...])


__all__ = [
    "DEFAULT_NGFF_VERSION",
    "NGFF_VERSIONS",
    "label_colors",
    "read_ome_zarr_attributes",
    "read_ome_zarr_labels",
    "write_labels_into_image",
    "write_ome_zarr_labels",
]
