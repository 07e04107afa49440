"""Where converted checkpoints live, keyed by the content of the original file.

The cache directory is ``platformdirs.user_cache_dir("napari-sam-keras")``
(e.g. ``~/.cache/napari-sam-keras`` on Linux), or ``$NAPARI_SAM_KERAS_CACHE_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

CACHE_ENV_VAR = "NAPARI_SAM_KERAS_CACHE_DIR"
_INDEX_LOCK = threading.Lock()


def cache_dir() -> Path:
    """The user cache directory of napari-sam-keras (created on demand)."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        path = Path(override)
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("napari-sam-keras"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def converted_dir() -> Path:
    path = cache_dir() / "converted"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, remembered by (path, size, mtime) to skip rehashing."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = cache_dir() / "hash-index.json"
    with _INDEX_LOCK:
        index = _read_index(index_path)
        if stamp in index:
            return index[stamp]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _INDEX_LOCK:
        index = _read_index(index_path)
        index[stamp] = value
        # a name of its own per process and thread: batch workers update the index together
        tmp = index_path.with_name(f".{index_path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_path)
    return value


def _read_index(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def converted_paths(content_hash: str) -> tuple[Path, Path]:
    """(weights file, config file) of a converted checkpoint in the cache."""
    base = converted_dir() / content_hash[:32]
    return base.with_suffix(".weights.h5"), base.with_suffix(".json")
