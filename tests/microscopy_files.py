"""Microscopy files for the tests, written with the libraries microscopists' software uses
(tifffile for OME-TIFF and ImageJ hyperstacks, ome-zarr-py for OME-Zarr), and the
third-party checks of what we write (ome-zarr-models, ome-zarr-py's Reader)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import tifffile

#: Physical sizes of every test file (micrometres, seconds).
PX, PY, PZ, DT = 0.5, 0.25, 2.0, 30.0


def blobs(shape: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    """A uint16 plane with two bright discs (where SAM finds objects)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    plane = 200 + 3000 * ((yy - 15) ** 2 + (xx - 18) ** 2 < 60)
    plane = plane + 2000 * ((yy - 30) ** 2 + (xx - 45) ** 2 < 80) + seed
    return plane.astype(np.uint16)


def ome_tiff(path: Path, data: np.ndarray, axes: str) -> Path:
    """An OME-TIFF with axes and physical sizes (X, Y, and Z/T when present)."""
    metadata = {"axes": axes, "PhysicalSizeX": PX, "PhysicalSizeY": PY}
    metadata.update({"PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    if "Z" in axes:
        metadata.update(PhysicalSizeZ=PZ, PhysicalSizeZUnit="µm")
    if "T" in axes:
        metadata.update(TimeIncrement=DT, TimeIncrementUnit="s")
    photometric = "rgb" if axes.endswith("S") else "minisblack"
    tifffile.imwrite(path, data, ome=True, metadata=metadata, photometric=photometric)
    return path


def imagej_hyperstack(path: Path, data: np.ndarray) -> Path:
    """An ImageJ TZCYX hyperstack with pixel size, z spacing and frame interval."""
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / PX, 1 / PY),
        metadata={"axes": "TZCYX", "spacing": PZ, "unit": "micron", "finterval": DT},
    )
    return path


def ome_zarr_image(path: Path, data: np.ndarray, axes: str, version: str = "0.5") -> Path:
    """An OME-Zarr image written by ome-zarr-py (one level), with physical sizes."""
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV05() if version == "0.5" else FormatV04()
    sizes = {"t": DT, "c": 1.0, "z": PZ, "y": PY, "x": PX}
    units = {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(
        data,
        group,
        scale_factors=[],
        fmt=fmt,
        axes=list(axes.lower()),
        scale={a: sizes[a] for a in axes.lower()},
        axes_units={a: units[a] for a in axes.lower() if a in units},
    )
    return path


def array_bytes(path: Path) -> dict[str, bytes]:
    """Every file of an OME-Zarr except the ``labels`` group, by relative path."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and "labels" not in p.relative_to(path).parts
    }


def validate_ngff(path: Path, version: str):
    """Validate an OME-Zarr group with ome-zarr-models (raises if it is not valid)."""
    import zarr

    if version == "0.4":
        _rebuild_v04_models()
        from ome_zarr_models.v04 import ImageLabel
    else:
        from ome_zarr_models.v05 import ImageLabel
    return ImageLabel.from_zarr(zarr.open_group(str(path), mode="r"))


def _rebuild_v04_models() -> None:
    # ome-zarr-models 1.7 asks for pydantic < 2.13; with a newer pydantic its v0.4 models
    # need their forward references resolved once (the models themselves are unchanged).
    import ome_zarr_models.v04.image as image
    import ome_zarr_models.v04.image_label as image_label
    import pydantic_zarr.v2 as v2

    names = {k: getattr(v2, k) for k in dir(v2) if not k.startswith("_")}
    for cls in (image.Image, image_label.ImageLabel):
        cls.model_rebuild(_types_namespace=names)


def read_with_ome_zarr_py(path: Path, version: str = "0.5") -> tuple[list, list[str]]:
    """ome-zarr-py's Reader over ``path`` (asking for NGFF ``version``): (its nodes, every
    warning and log line >= WARNING)."""
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    logger = logging.getLogger("ome_zarr")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fmt = FormatV05() if version == "0.5" else FormatV04()
            nodes = list(Reader(parse_url(str(path), fmt=fmt))())
    finally:
        logger.removeHandler(handler)
    return nodes, records + [
        str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)
    ]
