"""Files of a batch run: which images the inputs name, what each output is called, and the
label images and ``summary.csv`` written for them (all atomically)."""

from __future__ import annotations

import csv
import glob
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, SAMError
from .atomic_write import atomic_write
from .axis_readers import is_ome_zarr
from .image_files import smallest_unsigned
from .label_tiff import read_label_record, write_label_tiff
from .ome_zarr import read_ome_zarr_attributes, read_ome_zarr_labels, write_ome_zarr_labels

#: Files a folder input contributes (case-insensitive); a glob or a file name takes any file.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy")
#: Output formats and the ending of each output's name.
OUTPUT_FORMATS = {"tiff": "-labels.tif", "ome-zarr": "-labels.ome.zarr"}
#: The key of our record in a TIFF's ImageDescription / an OME-Zarr's attributes.
METADATA_KEY = "napari_sam_keras"
SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = ("input", "output", "status", "objects", "seconds", "worker", "message")


def _is_pattern(text: str) -> bool:
    return glob.has_magic(text)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def find_inputs(
    inputs: Iterable[str | os.PathLike], exclude: str | os.PathLike | None = None
) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files named by ``inputs``: files, folders (their image files, not
    recursive, hidden files skipped) and glob patterns (``**`` recurses).

    Returns ``(files, problems)``: the files in input order (sorted within a folder or a
    pattern), each once, none inside ``exclude`` (the output folder); and one
    ``(input, message)`` per input that names nothing (a missing file, an empty match).
    """
    excluded = Path(exclude).resolve() if exclude is not None else None
    files: list[Path] = []
    seen: set[Path] = set()
    problems: list[tuple[str, str]] = []

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen and not _inside(key, excluded):
            seen.add(key)
            files.append(path)

    def add_folder(folder: Path) -> int:
        found = sorted(
            p
            for p in folder.iterdir()
            if not p.name.startswith(".")
            and (
                (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                or (p.is_dir() and is_ome_zarr(p))
            )
        )
        for p in found:
            add(p)
        return len(found)

    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir() and is_ome_zarr(path):  # an OME-Zarr image is one input
            add(path)
        elif path.is_dir():
            if add_folder(path) == 0:
                problems.append((text, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder"))
        elif path.is_file():
            add(path)
        elif _is_pattern(text):
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            count = 0
            for match in map(Path, matches):
                if match.is_file() or (match.is_dir() and is_ome_zarr(match)):
                    add(match)
                    count += 1
                elif match.is_dir():
                    count += add_folder(match)
            if count == 0:
                problems.append((text, "the pattern matches no files"))
        else:
            problems.append((text, "no such file or folder"))
    return files, problems


def output_names(paths: Sequence[Path], output_format: str) -> list[str]:
    """One output file name per input: ``<stem>-labels.tif`` (or ``.ome.zarr``).

    Inputs whose stems collide (``a/img.tif`` and ``b/img.tif``, ``img.tif`` and
    ``img.png``) are told apart by their path below the inputs' common folder, with
    ``__`` for ``/`` (``a__img.tif-labels.tif``).  Names that still collide (compared
    without case, as on macOS and Windows disks: ``p/A01/img.tif`` and ``p__A01/img.tif``)
    get a short hash of the input's path (``p__A01__img.tif~1a2b3c4d-labels.tif``), so two
    inputs never share an output.  The names depend only on the inputs, so a re-run with
    the same inputs finds the same outputs.
    """
    ending = check_format(output_format)
    stems = [
        p.name.removesuffix(".zarr").removesuffix(".ome") if p.is_dir() else p.stem for p in paths
    ]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([r.parent for r in resolved])) if resolved else Path()
    names = []
    for stem, path in zip(stems, resolved, strict=True):
        if counts[stem] > 1:
            stem = "__".join(path.relative_to(common).parts)
        names.append(stem)
    names = _disambiguated(names, [p.relative_to(common) for p in resolved])
    return [name + ending for name in names]


def _disambiguated(stems: list[str], relative: list[Path]) -> list[str]:
    """``stems`` made unique (without case) by a hash of each colliding input's path."""
    import hashlib

    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    out = []
    for stem, rel in zip(stems, relative, strict=True):
        if counts[stem.casefold()] > 1:
            digest = hashlib.blake2b(rel.as_posix().encode(), digest_size=4).hexdigest()
            stem = f"{stem}~{digest}"
        out.append(stem)
    return out


def check_unique_outputs(outputs: Sequence[str | os.PathLike]) -> None:
    """Refuse a plan in which two inputs would write one output (compared without case)."""
    seen: dict[str, str] = {}
    for output in outputs:
        key = os.path.normcase(os.path.abspath(output)).casefold()
        if key in seen:
            raise SAMError(
                f"two inputs would write the same output {output} (and {seen[key]}): "
                "nothing was done; rename one of the inputs or run them into separate folders"
            )
        seen[key] = os.fspath(output)


def check_format(output_format: str) -> str:
    """The output name ending of ``output_format``, or a clear error."""
    try:
        return OUTPUT_FORMATS[output_format]
    except KeyError:
        raise SAMError(
            f"unknown output format {output_format!r}: use one of {', '.join(OUTPUT_FORMATS)}"
        ) from None


def output_format_of(path: Path) -> str:
    """``"ome-zarr"`` or ``"tiff"``, from the output's name."""
    return "ome-zarr" if path.name.endswith(".zarr") else "tiff"


def write_label_output(
    path: Path,
    labels: np.ndarray,
    record: dict[str, Any],
    pixel_sizes: dict[str, tuple[float, str | None]] | None = None,
    axes: str | None = None,
    ngff_version: str = "0.5",
) -> Path:
    """Write a label image (TIFF or OME-Zarr, from the name) with ``record`` as metadata and
    the input's ``pixel_sizes`` (axis letter -> (size, unit)) for its ``axes``.

    The dtype is the smallest unsigned one that holds the labels (as ``auto`` writes them);
    the file appears under its name only when complete.
    """
    labels = smallest_unsigned(labels)
    if output_format_of(path) == "ome-zarr":
        return write_ome_zarr_labels(
            path, labels, {METADATA_KEY: record}, pixel_sizes, axes, version=ngff_version
        )
    return write_label_tiff(path, labels, pixel_sizes, axes, record={METADATA_KEY: record})


def read_output_record(path: Path) -> dict[str, Any]:
    """The record stored with an output by :func:`write_label_output`.

    Raises :class:`ImageError` if ``path`` is not such an output (another program's file,
    or damaged).
    """
    try:
        if output_format_of(path) == "ome-zarr":
            record = read_ome_zarr_attributes(path).get(METADATA_KEY)
        else:
            record = (read_label_record(path) or {}).get(METADATA_KEY)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"cannot read {path}: {exc}") from exc
    if not isinstance(record, dict):
        raise ImageError(f"{path} was not written by a napari-sam-keras batch run")
    return record


def read_label_output(path: Path) -> np.ndarray:
    """The labels of an output file (TIFF or OME-Zarr)."""
    if output_format_of(path) == "ome-zarr":
        return read_ome_zarr_labels(path)
    import tifffile

    return np.asarray(tifffile.imread(path))


def write_summary(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``summary.csv`` (:data:`SUMMARY_COLUMNS`) atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    with atomic_write(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def read_summary(path: Path) -> list[dict[str, str]]:
    """The rows of a ``summary.csv``."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
