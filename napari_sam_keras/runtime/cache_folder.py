"""The user cache folder of napari-sam-keras, and whether it can be written.

``platformdirs.user_cache_dir("napari-sam-keras")`` (e.g. ``~/.cache/napari-sam-keras``
on Linux), or ``$NAPARI_SAM_KERAS_CACHE_DIR``.  It holds converted checkpoints
(:mod:`napari_sam_keras.model.weights_cache`) and compiled code
(:mod:`.compilation_cache`).  A folder that cannot be written only costs the
caching, after one :class:`CacheUnavailableWarning` per folder and process.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from pathlib import Path

CACHE_ENV_VAR = "NAPARI_SAM_KERAS_CACHE_DIR"

_state_lock = threading.Lock()
_writable: dict[Path, bool] = {}
_warned: set[Path] = set()


class CacheUnavailableWarning(UserWarning):
    """The cache directory cannot be written; models load, but nothing is kept between runs."""


def cache_dir() -> Path:
    """The cache directory of napari-sam-keras (it may not exist, or not be writable)."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-sam-keras"))


def warn_unusable(root: Path, err: BaseException) -> None:
    with _state_lock:
        if root in _warned:
            return
        _warned.add(root)
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    warnings.warn(
        f"The napari-sam-keras cache directory {root} cannot be used ({reason}): models still "
        "load, but converted checkpoints and compiled code are not kept between runs. "
        f"Set {CACHE_ENV_VAR} to a writable folder to move the cache.",
        CacheUnavailableWarning,
        stacklevel=4,
    )


def writable_subdir(name: str) -> Path | None:
    """``cache_dir() / name``, created; None (after one warning) if it cannot be written."""
    root = cache_dir()
    path = root / name
    with _state_lock:
        known = _writable.get(path)
    if known is not None:
        return path if known else None
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
        ok = True
    except OSError as err:
        ok = False
        warn_unusable(root, err)
    with _state_lock:
        _writable[path] = ok
    return path if ok else None
