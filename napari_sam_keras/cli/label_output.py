"""The label image a command writes: with the input's pixel sizes and axes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files.image_files import write_labels


def write_label_output(args, out: Path, labels: np.ndarray, selection) -> Path:
    """The label image with the input's pixel sizes (TIFF, OME-Zarr, or into the input's
    OME-Zarr ``labels/``)."""
    return write_labels(
        out,
        labels,
        pixel_sizes=selection.pixel_sizes,
        axes=selection.label_axes,
        ngff_version=getattr(args, "ngff_version", "0.5"),
    )
