"""Guards against files that would exhaust a machine: a pixel-count limit read from the header.

A compressed TIFF of a few megabytes can claim 40000 x 40000 pixels; decoding it
whole takes gigabytes.  Work that reads an image whole (untiled ``predict``,
``auto``, ``batch``) first reads the image's *header* (tifffile's page and series
shapes, the ``.npy`` header, Pillow's lazy open of PNG/JPEG/BMP) and refuses an
image with more than :data:`DEFAULT_MAX_PIXELS` pixels before any pixel is
decoded.  The limit is raised per call (``max_pixels=``), per command
(``--max-pixels N``) or per environment (``$NAPARI_SAM_KERAS_MAX_PIXELS``);
tiled work (``--tile-shape``) reads one tile at a time and needs no such limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import ImageError

#: The most pixels (all planes together, channels not counted) read whole by default:
#: 2**27 = 134 million, e.g. 16384 x 8192, or 128 planes of 1024 x 1024.
DEFAULT_MAX_PIXELS = 1 << 27
#: Environment variable that sets the limit (a number of pixels).
MAX_PIXELS_ENV_VAR = "NAPARI_SAM_KERAS_MAX_PIXELS"


class TooManyPixelsError(ImageError):
    """An image is larger than the pixel limit for work that reads it whole."""


def max_pixels(value: int | None = None) -> int:
    """The limit in force: ``value``, else ``$NAPARI_SAM_KERAS_MAX_PIXELS``, else the default."""
    if value is None:
        text = os.environ.get(MAX_PIXELS_ENV_VAR, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(float(text))
        except ValueError:
            raise ImageError(f"${MAX_PIXELS_ENV_VAR}={text!r} is not a number of pixels") from None
    if value < 1:
        raise ImageError(f"the pixel limit must be at least 1, got {value}")
    return int(value)


def header_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The array shape an image file's header claims, without decoding a pixel.

    None when the format has no header we can read this way (the file is then
    read as usual; readers of such formats decode at most what the file holds).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shapes = [tuple(s.shape) for s in tif.series] or [tuple(tif.pages[0].shape)]
                return max(shapes, key=math.prod)
        if suffix == ".npy":
            import numpy as np

            return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        if suffix in (".png", ".jpg", ".jpeg", ".bmp"):
            from PIL import Image

            with Image.open(path) as im:  # lazy: only the header is read
                width, height = im.size
            return (height, width)
    except Exception:  # unreadable header: the reader reports it with its own message
        return None
    return None


def pixel_count(shape: tuple[int, ...]) -> int:
    """Pixels of an array shape, a trailing colour axis (1, 3 or 4) not counted."""
    if len(shape) >= 3 and shape[-1] in (1, 3, 4):
        shape = shape[:-1]
    return math.prod(int(s) for s in shape)


def check_pixel_limit(
    path: str | os.PathLike, limit: int | None = None, per_plane: bool = False
) -> None:
    """Refuse ``path`` before it is read whole if its header claims more than ``limit`` pixels.

    ``per_plane``: the work reads one plane of a stack at a time; the limit applies to
    a plane (the last two axes, a colour axis not counted).

    Raises:
        TooManyPixelsError: with the size, the limit, and how to go on.
    """
    shape = header_shape(path)
    if shape is not None:
        check_shape_limit(shape, path, limit, per_plane)


def check_shape_limit(
    shape: tuple[int, ...],
    path: str | os.PathLike,
    limit: int | None = None,
    per_plane: bool = False,
) -> None:
    """:func:`check_pixel_limit` for a ``shape`` already known (a lazily opened image's:
    a file's declared shape, read before any pixel is decoded)."""
    limit = max_pixels(limit)
    shape = tuple(int(n) for n in shape)
    count = math.prod(_plane_axes(shape)) if per_plane else pixel_count(shape)
    if count > limit:
        raise TooManyPixelsError(
            f"{Path(path).name} claims {' x '.join(map(str, shape))} pixels ({count:,}), more "
            f"than the limit of {limit:,} for an image read whole: segment it in tiles with "
            f"--tile-shape 1024 (predict, auto), or raise the limit with --max-pixels {count} "
            f"(or ${MAX_PIXELS_ENV_VAR}) if the machine has the memory"
        )


def _plane_axes(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) >= 3 and shape[-1] in (1, 3, 4):
        shape = shape[:-1]
    return tuple(int(s) for s in shape[-2:])


def check_block_limit(array, path: str | os.PathLike, limit: int | None = None) -> None:
    """Refuse a lazily opened image whose storage blocks (TIFF strips or tiles) are larger
    than ``limit`` pixels: reading any tile of it decodes a whole block."""
    limit = max_pixels(limit)
    chunks = getattr(array, "chunks", None)
    if not chunks or not all(isinstance(c, int) for c in chunks):
        return
    count = pixel_count(tuple(chunks))
    if count > limit:
        raise TooManyPixelsError(
            f"{Path(path).name} stores its pixels in blocks of {' x '.join(map(str, chunks))} "
            f"({count:,} pixels), more than the limit of {limit:,}: reading any part of it "
            f"decodes a whole block. Raise the limit with --max-pixels {count} (or "
            f"${MAX_PIXELS_ENV_VAR}) if the machine has the memory, or re-save the image tiled"
        )
