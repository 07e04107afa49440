"""Reusing compiled code across processes: jax's persistent compilation cache.

On the jax backend every compiled forward pass (the image encoder, the prompt
path, ...) is kept in ``<user cache folder>/jax-compilation`` (see
:mod:`.cache_folder`), so a second process that runs the same model on the same
input shapes loads the compiled code instead of compiling again.  jax keys each
entry by the computation (its HLO), the compile options, the device and the
versions of jax and jaxlib, so an entry is never used for anything else.

* ``NAPARI_SAM_KERAS_COMPILATION_CACHE=0`` (or ``off``/``false``/``no``) turns it off;
  a path there moves it to that folder.
* A jax cache folder the user set already (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config``) is kept as it is.
* A folder that cannot be written only costs the caching.

TensorFlow and torch: not cached between processes (TensorFlow's XLA cache
and ``torch.compile``'s are not used by this project's eager/``tf.function`` calls).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .cache_folder import writable_subdir

ENV_VAR = "NAPARI_SAM_KERAS_COMPILATION_CACHE"
SUBDIR = "jax-compilation"
#: Compilations faster than this are not worth a file (tiny eager ops).
MIN_COMPILE_TIME_S = 0.1
_OFF = {"0", "off", "false", "no", "none", ""}

_lock = threading.Lock()
_state: dict[str, Path | None] = {}


def compilation_cache_folder() -> Path | None:
    """The folder jax's compilation cache uses in this process (None: no cache)."""
    with _lock:
        return _state.get("folder")


def enable_compilation_cache() -> Path | None:
    """Switch jax's persistent compilation cache on (once per process); return its folder.

    Call it after Keras was imported with the jax backend and before the first
    compilation.  Returns None when it is off, or the folder cannot be written.
    """
    with _lock:
        if "folder" in _state:
            return _state["folder"]
        _state["folder"] = folder = _enable()
        return folder


def _enable() -> Path | None:
    setting = os.environ.get(ENV_VAR)
    if setting is not None and setting.strip().lower() in _OFF:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own choice
        return Path(jax.config.jax_compilation_cache_dir)
    if setting:
        folder = Path(setting).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        if not os.access(folder, os.W_OK):
            return None
    else:
        folder = writable_subdir(SUBDIR)
        if folder is None:
            return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
