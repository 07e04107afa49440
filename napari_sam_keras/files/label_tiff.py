"""Label images as TIFF with the input's pixel sizes, and reading them back.

With pixel sizes the labels are written as an OME-TIFF (tifffile): ``PhysicalSizeX/Y/Z``
and ``TimeIncrement`` with their units in the OME-XML (Fiji's Bio-Formats, napari, QuPath
read them), and the X/Y size also in the TIFF resolution tags (centimetres, the unit plain
TIFF readers such as ImageJ's own opener understand).  Without pixel sizes, a plain TIFF as
before.  A record of ours (the batch settings) goes into a private tag, since the
ImageDescription of an OME-TIFF holds the OME-XML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_write import atomic_write

#: A private TIFF tag (65000-65535) holding our JSON record.
RECORD_TAG = 65000
#: NGFF unit names to the OME-XML's unit symbols.
OME_UNITS = {
    "micrometer": "µm",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "angstrom": "Å",
    "picometer": "pm",
    "second": "s",
    "millisecond": "ms",
    "microsecond": "µs",
    "minute": "min",
    "hour": "h",
}
#: Length units in centimetres (the TIFF resolution unit).
_CENTIMETRES = {
    "micrometer": 1e-4,
    "nanometer": 1e-7,
    "millimeter": 0.1,
    "centimeter": 1.0,
    "meter": 100.0,
    "angstrom": 1e-8,
    "picometer": 1e-10,
}

PixelSizes = dict[str, tuple[float, str | None]]


def default_label_axes(ndim: int) -> str:
    """The axes of a label image without others given: YX, or a stack ZYX."""
    return {2: "YX", 3: "ZYX"}.get(ndim, "TZYX"[-(ndim - 2) :] + "YX" if ndim > 3 else "YX")


def write_label_tiff(
    path: Path,
    labels: np.ndarray,
    pixel_sizes: PixelSizes | None = None,
    axes: str | None = None,
    record: dict[str, Any] | None = None,
) -> Path:
    """Write ``labels`` (axes ``axes``, default YX / ZYX) to ``path`` atomically, zlib
    compressed, as an OME-TIFF carrying ``pixel_sizes`` when there are any."""
    import tifffile

    axes = axes or default_label_axes(labels.ndim)
    sizes = {a: v for a, v in (pixel_sizes or {}).items() if a in axes}
    extratags = []
    if record is not None:
        extratags.append((RECORD_TAG, "s", 0, json.dumps(record), True))
    options: dict[str, Any] = {"compression": "zlib", "extratags": extratags}
    if sizes:
        metadata: dict[str, Any] = {"axes": axes}
        for axis, (size, unit) in sizes.items():
            key = "TimeIncrement" if axis == "T" else f"PhysicalSize{axis}"
            metadata[key] = float(size)
            if unit in OME_UNITS:
                metadata[f"{key}Unit"] = OME_UNITS[unit]
        options.update(ome=True, metadata=metadata)
        if "X" in sizes and "Y" in sizes and all(sizes[a][1] in _CENTIMETRES for a in "XY"):
            options.update(
                resolution=tuple(1.0 / (sizes[a][0] * _CENTIMETRES[sizes[a][1]]) for a in "XY"),
                resolutionunit="CENTIMETER",
            )
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, labels, **options)
    return path


def read_label_record(path: Path) -> dict[str, Any] | None:
    """Our record in a label TIFF: the private tag, else (older outputs) a JSON
    ImageDescription; None if there is neither."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        tag = page.tags.get(RECORD_TAG)
        text = tag.value if tag is not None else page.description
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
