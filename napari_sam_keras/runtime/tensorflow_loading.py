"""Loading TensorFlow so that an OpenGL driver's LLVM in the same process cannot crash it.

keras-cv imports TensorFlow whatever the Keras backend, and TensorFlow carries
its own copy of LLVM.  So does the OpenGL driver on Linux (Mesa: llvmpipe,
radeonsi, ...: ``libLLVM-NN.so``), loaded once napari shows a canvas.  Two
failures were seen (TensorFlow 2.21, Mesa's libLLVM-15, under Xvfb):

* TensorFlow imported *after* the driver: segmentation fault in TensorFlow's
  LLVM static initialisers (they bind to the driver's symbols).
* TensorFlow imported *before* the driver: it makes its libraries
  ``RTLD_GLOBAL``, the driver's LLVM binds to TensorFlow's symbols, and the
  process aborts at exit (``free(): invalid pointer`` in ``~cl::opt``).

:func:`load_ml_stack` avoids both: TensorFlow's libraries are loaded
``RTLD_LOCAL`` (its non-static builds support that) and, when a foreign LLVM is
already mapped, with ``RTLD_DEEPBIND`` so they prefer their own symbols.  It
must run before Keras is imported, on the thread that owns the GUI where there is one
(the dlopen flags are process-wide); :func:`napari_sam_keras.runtime.backend.import_keras`
calls it, so every model load goes through it.  It does nothing once keras-cv is imported.
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()
_GLOBAL_FLAGS_MODULE = "tensorflow.python.pywrap_dlopen_global_flags"


def foreign_llvm_loaded() -> bool:
    """Whether a shared ``libLLVM`` (e.g. from the OpenGL driver) is mapped in this process."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


def load_ml_stack() -> None:
    """Import TensorFlow, Keras and keras-cv so that a loaded OpenGL LLVM cannot crash them.

    The Keras backend must be chosen first: call
    :func:`napari_sam_keras.runtime.backend.import_ml_stack`, which does.
    """
    with _lock:
        if "keras_cv" in sys.modules:
            return
        deep = (
            "tensorflow" not in sys.modules
            and hasattr(os, "RTLD_DEEPBIND")
            and foreign_llvm_loaded()
        )
        old_flags = sys.getdlopenflags()
        if deep:
            sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
        # TensorFlow makes its libraries RTLD_GLOBAL; an OpenGL LLVM loaded later would
        # bind to TensorFlow's LLVM symbols and abort the process at exit.  Without the
        # helper module TensorFlow loads them RTLD_LOCAL, which it supports.
        blocked = "tensorflow" not in sys.modules
        if blocked:
            sys.modules.setdefault(_GLOBAL_FLAGS_MODULE, None)
        try:
            import keras  # noqa: F401
            import keras_cv  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            if deep:
                sys.setdlopenflags(old_flags)
            if blocked and sys.modules.get(_GLOBAL_FLAGS_MODULE, 0) is None:
                del sys.modules[_GLOBAL_FLAGS_MODULE]
