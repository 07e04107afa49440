"""Reading images and writing label images (TIFF, PNG, NumPy), for the CLI and scripts."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from ..errors import ImageError
from .atomic_write import atomic_write


def read_image(path: Path) -> np.ndarray:
    """Read an image file into a NumPy array (TIFF with tifffile, .npy, else imageio)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            return _read_tiff(path)
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False))
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except Exception as exc:  # any reader failure is the user's file, not our bug
        detail = str(exc).strip()
        if not detail or "pip install" in detail or "backend" in detail:
            # imageio's "install pyav/opencv" advice is wrong for a damaged or mislabelled file
            detail = f"it is not a {suffix or 'known'} image file (damaged, or another format)"
        raise ImageError(f"cannot read image {path}: {detail.splitlines()[0]}") from exc


_TIFF_LOG_LOCK = threading.Lock()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _read_tiff(path: Path) -> np.ndarray:
    """tifffile.imread, with its log lines kept back: dropped if the read fails (the error
    says it all), passed on if it succeeds."""
    import tifffile

    logger = logging.getLogger("tifffile")
    collect = _Collect()
    with _TIFF_LOG_LOCK:
        propagate = logger.propagate
        logger.addHandler(collect)
        logger.propagate = False
        try:
            image = np.asarray(tifffile.imread(path))
        finally:
            logger.removeHandler(collect)
            logger.propagate = propagate
    for record in collect.records:
        logger.handle(record)
    if image.size == 0:
        raise ValueError("it holds no pixels (damaged?)")
    return image


def open_image_lazily(path: Path):
    """An image file as an array read on demand where the format allows it.

    TIFF files become a zarr array over the file (tifffile's ``aszarr``: only
    the strips or tiles a slice touches are read; for a pyramid, the full-size
    level), ``.npy`` files a read-only memory map; other formats are read
    whole (:func:`read_image`).  The result supports ``shape``, ``dtype``,
    ``ndim`` and slicing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".tif", ".tiff", ".npy"):
        return read_image(path)
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        import tifffile
        import zarr

        opened = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
        if isinstance(opened, zarr.Group):  # a multiscale pyramid: the full-size level
            opened = opened[sorted(opened.array_keys())[0]]
        return opened
    except Exception as exc:  # any reader failure is the user's file, not our bug
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def select_plane(image: np.ndarray, plane: int | None, path: Path) -> np.ndarray:
    """Reduce ``image`` to one 2D grey or RGB(A) plane, or say how to."""
    rgb = image.ndim >= 3 and image.shape[-1] in (1, 3, 4)  # channels last
    plane_ndim = 3 if rgb else 2
    if image.ndim == plane_ndim:
        if plane is not None:
            raise ImageError(f"--plane given but {path} is a single 2D image {image.shape}")
        return image
    if image.ndim == plane_ndim + 1:
        if plane is None:
            raise ImageError(
                f"{path} is a stack of shape {image.shape}; choose a plane with --plane Z "
                f"(0..{image.shape[0] - 1})"
            )
        if not -image.shape[0] <= plane < image.shape[0]:
            raise ImageError(f"--plane {plane} is outside 0..{image.shape[0] - 1}")
        return image[plane]
    raise ImageError(
        f"{path} has shape {image.shape}; expected a 2D grey (Y, X) or RGB (Y, X, 3) image, "
        "or a stack of them"
    )


LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def check_label_path(path: Path) -> Path:
    """Fail early (before the slow work) on an output path that cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in LABEL_SUFFIXES:
        raise ImageError(f"unsupported label file type {path.suffix!r}: use .tif, .png or .npy")
    if not path.parent.is_dir():
        raise ImageError(f"output folder does not exist: {path.parent}")
    return path


def smallest_unsigned(labels: np.ndarray) -> np.ndarray:
    """Labels (non-negative integers) as the smallest unsigned dtype that holds them."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    return labels.astype(dtype, copy=False)


def write_labels(path: Path, labels: np.ndarray) -> Path:
    """Write a label image atomically; the dtype is the smallest unsigned one that holds it.

    The caller decides whether ``path`` may be replaced (:func:`check_output`).
    """
    labels = smallest_unsigned(labels)
    path = check_label_path(path)
    if path.suffix.lower() == ".png" and labels.dtype == np.uint32:
        raise ImageError(f"{int(labels.max())} labels do not fit in a PNG; write a .tif instead")
    write_array(path, labels, compression=True)
    return path


def write_array(path: Path, array: np.ndarray, compression: bool = False) -> Path:
    """Write an image array as .tif, .npy or .png/.jpg (by suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_write(path) as tmp:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, array, compression="zlib" if compression else None)
        elif suffix == ".npy":
            np.save(tmp, array)
        elif suffix in (".png", ".jpg", ".jpeg"):
            import imageio.v3 as iio

            iio.imwrite(tmp, array, extension=suffix)
        else:
            raise ImageError(f"unsupported file type {path.suffix!r}: use .tif or .npy")
    return path
