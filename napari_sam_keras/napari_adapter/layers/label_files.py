"""napari reader and writer contributions for label images (npe2, see ``napari.yaml``).

The reader opens our label TIFFs (``*-labels.tif``) and OME-Zarr label images (a group with
``image-label`` metadata, or an image's ``labels/NAME``) as *Labels* layers with their
physical scale; the writer saves a Labels layer as an OME-TIFF (``.tif``) or an OME-Zarr
label image (``.ome.zarr``, NGFF 0.5) with the layer's scale.  The file work is the core's
(:mod:`napari_sam_keras.files`); this module only maps layers to files and back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: The ending of the label TIFFs the reader claims (the CLI's default output names).
LABEL_TIFF_ENDINGS = ("-labels.tif", "-labels.tiff")


def _is_label_group(path: Path) -> bool:
    from ...files.ome_zarr import read_ome_zarr_attributes

    if not path.is_dir():
        return False
    try:
        attrs = read_ome_zarr_attributes(path)
    except Exception:
        return False
    return "image-label" in attrs.get("ome", attrs)


def get_reader(path: str | list[str]):
    """The reader for ``path`` if it is one of our label files, else None (napari asks the
    next plugin)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    candidate = Path(path)
    if candidate.name.lower().endswith(LABEL_TIFF_ENDINGS) and candidate.is_file():
        return read_labels
    if _is_label_group(candidate):
        return read_labels
    return None


def read_labels(path: str | list[str]) -> list[tuple[Any, dict, str]]:
    """One Labels layer: the label image with the scale (and units) of its pixel sizes."""
    from ...files.axis_readers import open_axis_image

    path = Path(path[0] if isinstance(path, list) else path)
    image = open_axis_image(path)
    axes = image.axes.replace("S", "")
    scale = [image.pixel_sizes.get(a, (1.0, None))[0] for a in axes]
    units = [image.pixel_sizes.get(a, (1.0, None))[1] or "pixel" for a in axes]
    name = path.name
    if path.parent.name == "labels":  # IMAGE/labels/NAME
        name = f"{path.parent.parent.name.removesuffix('.zarr').removesuffix('.ome')} {name}"
    meta = {"name": name, "scale": scale, "axis_labels": list(axes.lower())}
    if all(u != "pixel" for u in units):
        meta["units"] = units
    return [(np.asarray(image.data[...]), meta, "labels")]


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Labels layer (its data and scale) as an OME-TIFF or an OME-Zarr label image."""
    from ...files.image_files import write_labels

    labels = np.asarray(data)
    axes = "".join(a.upper() for a in (meta.get("axis_labels") or [])) or None
    if axes is None or any(a not in "TZYX" for a in axes) or len(axes) != labels.ndim:
        axes = "TZYX"[-labels.ndim :] if labels.ndim <= 4 else None
    scale = list(meta.get("scale") or [1.0] * labels.ndim)
    units = list(meta.get("units") or [None] * labels.ndim)
    sizes = {a: (float(s), _unit(u, a)) for a, s, u in zip(axes, scale, units, strict=True)}
    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff", ".zarr"):
        target = target.with_name(target.name + ".tif")
    written = write_labels(target, labels, pixel_sizes=sizes, axes=axes)
    return [str(written)]


def _unit(unit: Any, axis: str) -> str | None:
    from ...files.axis_readers import unit_name

    text = str(unit) if unit is not None else None
    if text in (None, "pixel", ""):
        return None
    return unit_name(text) or unit_name(text.replace("meter", "m"))
