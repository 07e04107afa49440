"""A minimal OME-Zarr (NGFF 0.4) writer and reader for label images, with no zarr package.

NGFF 0.4 stores an image as a Zarr v2 group: ``.zgroup``, ``.zattrs`` with the
``multiscales`` metadata, and one array per resolution level (here only ``0``):
``0/.zarray`` and zlib-compressed chunks in nested folders (``0/z/y/x``, the
``"/"`` dimension separator).  Any OME-Zarr reader (``ome-zarr``, ``zarr``,
napari-ome-zarr, Fiji's MoBIE/n5-viewer) opens it.  The whole folder is written
to a temporary name and renamed when complete.
"""

from __future__ import annotations

import itertools
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError
from .atomic_write import atomic_directory

NGFF_VERSION = "0.4"
#: Chunk edge along Y and X; a stack is chunked one plane at a time.
CHUNK = 1024
_AXES = {
    2: [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
    3: [
        {"name": "z", "type": "space"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ],
}


def write_ome_zarr_labels(
    path: str | Path, labels: np.ndarray, attributes: dict[str, Any] | None = None
) -> Path:
    """Write a (Y, X) or (Z, Y, X) label image as an NGFF 0.4 OME-Zarr folder, atomically.

    ``attributes`` (JSON-serialisable) are stored in the group's ``.zattrs`` beside
    ``multiscales`` and ``image-label``.
    """
    path = Path(path)
    labels = np.ascontiguousarray(labels)
    if labels.ndim not in _AXES:
        raise ImageError(f"an OME-Zarr label image is 2D or 3D, not shape {labels.shape}")
    if labels.dtype.kind not in "ui":
        raise ImageError(f"labels must be integers, not {labels.dtype}")
    chunks = ((1,) if labels.ndim == 3 else ()) + tuple(
        min(CHUNK, n) or 1 for n in labels.shape[-2:]
    )
    group_attrs = {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": path.name.removesuffix(".zarr").removesuffix(".ome"),
                "axes": _AXES[labels.ndim],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0] * labels.ndim}
                        ],
                    }
                ],
            }
        ],
        "image-label": {"version": NGFF_VERSION},
        **(attributes or {}),
    }
    array_meta = {
        "zarr_format": 2,
        "shape": list(labels.shape),
        "chunks": list(chunks),
        "dtype": labels.dtype.newbyteorder("<").str,
        "compressor": {"id": "zlib", "level": 1},
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    }
    data = labels.astype(labels.dtype.newbyteorder("<"), copy=False)
    with atomic_directory(path) as tmp:
        (tmp / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
        (tmp / ".zattrs").write_text(json.dumps(group_attrs, indent=1))
        array_dir = tmp / "0"
        array_dir.mkdir()
        (array_dir / ".zarray").write_text(json.dumps(array_meta, indent=1))
        counts = [range(-(-n // c)) for n, c in zip(labels.shape, chunks, strict=True)]
        for index in itertools.product(*counts):
            # edge chunks are stored full size, padded with the fill value (Zarr v2)
            block = np.zeros(chunks, data.dtype)
            region = tuple(
                slice(i * c, min((i + 1) * c, n))
                for i, c, n in zip(index, chunks, labels.shape, strict=True)
            )
            part = data[region]
            block[tuple(slice(0, s) for s in part.shape)] = part
            chunk_path = array_dir.joinpath(*map(str, index))
            chunk_path.parent.mkdir(parents=True, exist_ok=True)
            chunk_path.write_bytes(zlib.compress(block.tobytes(), 1))
    return path


def read_ome_zarr_attributes(path: str | Path) -> dict[str, Any]:
    """The group attributes (``.zattrs``) of an OME-Zarr folder."""
    try:
        return json.loads((Path(path) / ".zattrs").read_text())
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path} is not an OME-Zarr folder: {exc}") from exc


def read_ome_zarr_labels(path: str | Path) -> np.ndarray:
    """Level 0 of an OME-Zarr label image written by :func:`write_ome_zarr_labels`."""
    array_dir = Path(path) / "0"
    try:
        meta = json.loads((array_dir / ".zarray").read_text())
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path} is not an OME-Zarr label image: {exc}") from exc
    if meta.get("compressor", {}).get("id") != "zlib" or meta.get("dimension_separator") != "/":
        raise ImageError(f"{path}: only zlib-compressed, '/'-separated arrays are read here")
    shape, chunks, dtype = meta["shape"], meta["chunks"], np.dtype(meta["dtype"])
    out = np.full(shape, meta.get("fill_value") or 0, dtype)
    counts = [range(-(-n // c)) for n, c in zip(shape, chunks, strict=True)]
    for index in itertools.product(*counts):
        chunk_path = array_dir.joinpath(*map(str, index))
        if not chunk_path.exists():
            continue
        block = np.frombuffer(zlib.decompress(chunk_path.read_bytes()), dtype).reshape(chunks)
        region = tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, shape, strict=True)
        )
        out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
    return out
