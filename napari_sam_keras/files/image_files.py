"""Reading images and writing label images (TIFF, PNG, NumPy), for the CLI and scripts."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
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


@contextmanager
def tifffile_log_held():
    """Hold tifffile's log lines back: dropped if the block fails (the error says it all),
    passed on if it succeeds."""
    logger = logging.getLogger("tifffile")
    collect = _Collect()
    with _TIFF_LOG_LOCK:
        propagate = logger.propagate
        logger.addHandler(collect)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(collect)
            logger.propagate = propagate
    for record in collect.records:
        logger.handle(record)


def _read_tiff(path: Path) -> np.ndarray:
    """tifffile.imread, with its log lines held back (:func:`tifffile_log_held`)."""
    import tifffile

    with tifffile_log_held():
        image = np.asarray(tifffile.imread(path))
    if image.size == 0:
        raise ValueError("it holds no pixels (damaged?)")
    return image


def select_plane(image: np.ndarray, plane: int | None, path: Path) -> np.ndarray:
    """Reduce an array without axis metadata to one 2D grey or RGB(A) plane (``plane``: the
    index along its leading Z axis), or say how to (:func:`.image_axes.select_planes`)."""
    from .image_axes import AxisImage, guess_axes, select_planes

    image = np.asarray(image)
    axes = AxisImage(image, guess_axes(image.shape), Path(path))
    return np.asarray(select_planes(axes, z=plane).data)


LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".npy", ".zarr")


def check_label_path(path: Path) -> Path:
    """Fail early (before the slow work) on an output path that cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in LABEL_SUFFIXES:
        raise ImageError(
            f"unsupported label file type {path.suffix!r}: use .tif, .png, .npy or .ome.zarr"
        )
    if not path.parent.is_dir():
        raise ImageError(f"output folder does not exist: {path.parent}")
    return path


def image_of_label_path(path: Path) -> Path | None:
    """The OME-Zarr image whose ``labels/`` group ``path`` is in (``IMAGE/labels/NAME``),
    or None."""
    from .ngff_metadata import is_ome_zarr

    path = Path(path)
    if path.parent.name == "labels" and is_ome_zarr(path.parent.parent):
        return path.parent.parent
    return None


def check_label_output(path: Path, inputs=(), overwrite: bool = False) -> Path:
    """:func:`check_label_path` and :func:`.atomic_write.check_output` for a label output,
    which may be a folder (an OME-Zarr, or ``IMAGE/labels/NAME`` inside an input's)."""
    from .atomic_write import OutputExistsError, check_output, same_file

    path = Path(path)
    if image_of_label_path(path) is None:
        check_label_path(path)
    if path.suffix.lower() == ".zarr" or image_of_label_path(path) is not None:
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path} exists: choose another --out, or give --overwrite to replace it"
            )
        if not path.exists() or path.is_file():
            check_output(path, inputs=inputs, overwrite=True)  # never an input
        elif any(same_file(path, source) for source in inputs):
            raise OutputExistsError(f"the output {path} is the input {path}: choose another --out")
        return path
    return check_output(path, inputs=inputs, overwrite=overwrite)


def smallest_unsigned(labels: np.ndarray) -> np.ndarray:
    """Labels (non-negative integers) as the smallest unsigned dtype that holds them."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    return labels.astype(dtype, copy=False)


def write_labels(
    path: Path,
    labels: np.ndarray,
    pixel_sizes: dict[str, tuple[float, str | None]] | None = None,
    axes: str | None = None,
    ngff_version: str = "0.5",
) -> Path:
    """Write a label image atomically; the dtype is the smallest unsigned one that holds it.

    ``.ome.zarr`` paths become an OME-Zarr label image (NGFF ``ngff_version``), a path
    ``IMAGE/labels/NAME`` inside an OME-Zarr image a label image of that image
    (:mod:`.ome_zarr`).
    A TIFF keeps ``pixel_sizes`` (axis letter -> (size, unit), as an :class:`.AxisImage`
    has them) as OME-TIFF metadata (:func:`.label_tiff.write_label_tiff`); ``axes``
    names the label image's axes (default YX, or ZYX for a stack).  The caller decides
    whether ``path`` may be replaced (:func:`check_label_output`).
    """
    labels = smallest_unsigned(labels)
    image = image_of_label_path(path)
    if image is not None:
        from .ome_zarr import write_labels_into_image

        return write_labels_into_image(
            image, Path(path).name, labels, None, pixel_sizes, axes, overwrite=True
        )
    path = check_label_path(path)
    if path.suffix.lower() == ".zarr":
        from .ome_zarr import write_ome_zarr_labels

        return write_ome_zarr_labels(path, labels, None, pixel_sizes, axes, version=ngff_version)
    if path.suffix.lower() == ".png" and labels.dtype == np.uint32:
        raise ImageError(f"{int(labels.max())} labels do not fit in a PNG; write a .tif instead")
    if path.suffix.lower() in (".tif", ".tiff"):
        from .label_tiff import write_label_tiff

        return write_label_tiff(path, labels, pixel_sizes, axes)
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
