"""The NGFF (OME-Zarr) metadata of a zarr folder, read as JSON: no zarr, no pixels.

Shared by the readers (:mod:`.axis_readers`) and the writer (:mod:`.ome_zarr`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ImageError


def ngff_attributes_or_none(path: Path) -> dict[str, Any] | None:
    """The OME attributes of a zarr group (0.5: under ``ome``; 0.4: at the top), or None."""
    for name in ("zarr.json", ".zattrs"):
        try:
            meta = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = meta.get("attributes", {}) if name == "zarr.json" else meta
        attrs = attrs.get("ome", attrs)
        if isinstance(attrs, dict) and "multiscales" in attrs:
            return attrs
    return None


def ngff_attributes(path: str | Path) -> dict[str, Any]:
    """The OME attributes of an OME-Zarr image or label group."""
    attrs = ngff_attributes_or_none(Path(path))
    if attrs is None:
        raise ImageError(f"{path} is not an OME-Zarr image (no multiscales metadata)")
    return attrs


def is_ome_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a zarr folder with OME ``multiscales`` metadata (NGFF 0.4 or 0.5)."""
    return ngff_attributes_or_none(Path(path)) is not None
