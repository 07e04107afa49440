"""Where converted checkpoints live, keyed by the content of the original file.

The cache directory is ``platformdirs.user_cache_dir("napari-sam-keras")``
(e.g. ``~/.cache/napari-sam-keras`` on Linux), or ``$NAPARI_SAM_KERAS_CACHE_DIR``.

It is safe for any number of processes at once, without locks: every file
is written to a temporary name unique to its process and renamed into place
when complete (:func:`~napari_sam_keras.files.atomic_write.atomic_write`),
and nothing is ever read, modified and written back.  The index of file
hashes is one small file per entry (``hashes/``), so concurrent writers never
lose each other's entries.  A converted checkpoint (``converted/``) is a
``.weights.h5`` file plus a ``.json`` entry holding its architecture and a
checksum of the weight values, which is checked on every read.

A cache directory that cannot be written (read-only, or a path that is a
file) only costs the caching: everything still works, after one
:class:`CacheUnavailableWarning` per directory and process.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..files.atomic_write import atomic_write
from ..runtime.cache_folder import (  # noqa: F401 (part of this module's API)
    CACHE_ENV_VAR,
    CacheUnavailableWarning,
    cache_dir,
    warn_unusable,
    writable_subdir,
)

#: Version of the ``converted/*.json`` entries; older entries are converted again.
ENTRY_FORMAT = 2


def _write_text(folder: str, name: str, text: str) -> None:
    """Write a cache file atomically; a failure only costs the caching."""
    directory = writable_subdir(folder)
    if directory is None:
        return
    try:
        with atomic_write(directory / name) as tmp:
            tmp.write_text(text)
    except OSError as err:
        warn_unusable(cache_dir(), err)


# --- file hashes -------------------------------------------------------------------------


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def _hash_entry(stamp: str) -> Path:
    return cache_dir() / "hashes" / (hashlib.sha256(stamp.encode()).hexdigest()[:32] + ".json")


def cached_file_hash(path: str | os.PathLike) -> str | None:
    """The SHA-256 remembered for ``path`` at its current size and mtime, if any."""
    path = Path(path).resolve()
    stamp = _stamp(path)
    try:
        entry = json.loads(_hash_entry(stamp).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("stamp") != stamp:
        return None
    value = entry.get("sha256")
    return value if isinstance(value, str) and len(value) == 64 else None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, remembered by (path, size, mtime) to skip rehashing."""
    path = Path(path).resolve()
    known = cached_file_hash(path)
    if known is not None:
        return known
    stamp = _stamp(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    if _stamp(path) == stamp:  # not changed while it was read
        entry = _hash_entry(stamp)
        _write_text("hashes", entry.name, json.dumps({"stamp": stamp, "sha256": value}))
    return value


# --- converted checkpoints ---------------------------------------------------------------


def weights_checksum(arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 over the shapes, dtypes and values of a model's weights, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def model_checksum(model) -> str:
    """:func:`weights_checksum` of a Keras model's weights (written with a conversion)."""
    from ..runtime.backend import import_keras

    ops = import_keras().ops
    return weights_checksum(np.asarray(ops.convert_to_numpy(v.value)) for v in model.weights)


def converted_paths(content_hash: str, kind: str = "sam") -> tuple[Path, Path]:
    """(weights file, entry file) of a converted network in the cache.

    ``kind`` names the network converted from the file: ``"sam"``, or
    ``"decoder"`` for micro-sam's instance decoder.
    """
    name = content_hash[:32] if kind == "sam" else f"{content_hash[:32]}.{kind}"
    base = cache_dir() / "converted" / name
    return base.with_name(name + ".weights.h5"), base.with_name(name + ".json")


def read_converted(content_hash: str, kind: str = "sam") -> tuple[Path, dict, str] | None:
    """(weights file, architecture as a dict, weights checksum) of a cached conversion.

    None when there is none, or its entry is unreadable or of an older format.
    """
    weights, entry_path = converted_paths(content_hash, kind)
    try:
        entry = json.loads(entry_path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(entry, dict)
        or entry.get("format") != ENTRY_FORMAT
        or not isinstance(entry.get("config"), dict)
        or not isinstance(entry.get("weights_sha256"), str)
        or not weights.is_file()
    ):
        return None
    return weights, entry["config"], entry["weights_sha256"]


def store_converted(
    content_hash: str,
    config: dict,
    checksum: str,
    write_weights: Callable[[Path], None],
    kind: str = "sam",
) -> bool:
    """Keep a conversion: ``write_weights(path)`` writes the ``.weights.h5`` file.

    The weights file is written first and the entry last, each atomically, so
    a reader sees a complete entry or none.  Returns whether it was stored
    (False, after one warning, when the cache cannot be written).
    """
    directory = writable_subdir("converted")
    if directory is None:
        return False
    weights, entry_path = converted_paths(content_hash, kind)
    entry = {"format": ENTRY_FORMAT, "config": config, "weights_sha256": checksum}
    try:
        with atomic_write(weights, suffix=".weights.h5") as tmp:
            write_weights(tmp)
        with atomic_write(entry_path) as tmp:
            tmp.write_text(json.dumps(entry))
    except OSError as err:
        warn_unusable(cache_dir(), err)
        return False
    return True


def discard_converted(content_hash: str, kind: str = "sam") -> None:
    """Remove a (damaged) cached conversion, if the cache allows it."""
    for path in reversed(converted_paths(content_hash, kind)):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
