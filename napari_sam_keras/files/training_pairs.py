"""Training data on disk: image files paired with their label images by name.

Used by ``napari-sam-keras finetune`` and ``evaluate``.  ``--images`` and ``--labels`` are
files, folders or glob patterns (as for ``batch``).  A label file belongs to the image with
the same name stem, with or without a label ending: ``cell_01.tif`` pairs with
``cell_01.tif``, ``cell_01-labels.tif`` (what ``batch`` and the image-series widget write),
``cell_01_labels.tif``, ``cell_01_mask.png``, ...  Every file left without a partner, and
every name claimed twice, is reported in one error, before anything is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ImageError, SAMError
from .batch_files import find_inputs
from .image_files import read_image

#: Endings of a label file's stem that are dropped to find its image (case-insensitive).
LABEL_ENDINGS = tuple(
    sep + word
    for word in ("labels", "label", "masks", "mask", "seg", "instances", "gt")
    for sep in ("-", "_", ".")
)


def name_stem(path: Path) -> str:
    """A file's name without its format ending (``.tif``, ``.ome.tif``, ...)."""
    name = path.name
    for ending in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return path.stem


def label_key(path: Path, image_stems) -> str:
    """The image name stem a label file belongs to: its own stem if an image has it, else its
    stem without a label ending (:data:`LABEL_ENDINGS`)."""
    stem = name_stem(path)
    if stem in image_stems:
        return stem
    for ending in LABEL_ENDINGS:
        if stem.lower().endswith(ending) and len(stem) > len(ending):
            return stem[: -len(ending)]
    return stem


def _files(inputs: Iterable[str | os.PathLike], what: str) -> list[Path]:
    files, problems = find_inputs(inputs)
    if problems:
        listed = "; ".join(f"{item}: {message}" for item, message in problems)
        raise SAMError(f"{what}: {listed}")
    if not files:
        raise SAMError(f"{what}: no files given")
    return files


def _by_key(files: Sequence[Path], key, what: str) -> dict[str, Path]:
    keys: dict[str, list[Path]] = {}
    for path in files:
        keys.setdefault(key(path), []).append(path)
    clashes = {key: paths for key, paths in keys.items() if len(paths) > 1}
    if clashes:
        listed = "; ".join(
            f"{key}: {', '.join(str(p) for p in paths)}" for key, paths in sorted(clashes.items())
        )
        raise SAMError(
            f"several {what} files have the same name, so pairing is ambiguous: {listed}"
        )
    return {key: paths[0] for key, paths in keys.items()}


def pair_files(
    images: Iterable[str | os.PathLike], labels: Iterable[str | os.PathLike]
) -> list[tuple[Path, Path]]:
    """``(image file, label file)`` pairs, in the images' order.

    Raises :class:`SAMError` naming every image without a label file and every label file
    without an image (and names claimed by two files), before any file is read.  A file
    named in both lists (one folder given for both) counts as a label file.
    """
    label_files = _files(labels, "--labels")
    label_set = {p.resolve() for p in label_files}
    image_files = [p for p in _files(images, "--images") if p.resolve() not in label_set]
    image_keys = _by_key(image_files, name_stem, "image")
    label_keys = _by_key(label_files, lambda p: label_key(p, image_keys), "label")
    lonely_images = [str(p) for key, p in image_keys.items() if key not in label_keys]
    lonely_labels = [str(p) for key, p in label_keys.items() if key not in image_keys]
    if lonely_images or lonely_labels:
        parts = []
        if lonely_images:
            parts.append(f"images without a label file: {', '.join(lonely_images)}")
        if lonely_labels:
            parts.append(f"label files without an image: {', '.join(lonely_labels)}")
        raise SAMError(
            "cannot pair images with labels by name (a label file is named like its image, "
            f"optionally ending in -labels, _labels, _mask, ...): {'; '.join(parts)}"
        )
    return [(path, label_keys[key]) for key, path in image_keys.items()]


def read_pairs(pairs: Sequence[tuple[Path, Path]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The images and label images of ``pairs`` as arrays (labels: integers, 0 = background)."""
    images, labels = [], []
    for image_path, label_path in pairs:
        image = read_image(image_path)
        label = read_image(label_path)
        if not np.issubdtype(label.dtype, np.integer) and label.dtype != bool:
            raise ImageError(
                f"{label_path} holds {label.dtype} values: a label image holds integer object "
                "ids (0 = background)"
            )
        images.append(image)
        labels.append(label.astype(np.int64, copy=False) if label.dtype == bool else label)
    return images, labels
