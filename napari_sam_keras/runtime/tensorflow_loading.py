"""Loading TensorFlow so that an OpenGL driver's LLVM in the same process cannot crash it.

TensorFlow is imported only where it is needed: the tensorflow Keras backend,
and keras-cv or keras-hub (which import it whatever the backend: reading a
keras-cv preset, a keras-hub model).  TensorFlow carries its own copy of LLVM.  So does the OpenGL driver on Linux (Mesa: llvmpipe,
radeonsi, ...: ``libLLVM-NN.so``), loaded once napari shows a canvas.  Two
failures were seen (TensorFlow 2.21, Mesa's libLLVM-15, under Xvfb):

* TensorFlow imported *after* the driver: segmentation fault in TensorFlow's
  LLVM static initialisers (they bind to the driver's symbols).
* TensorFlow imported *before* the driver: it makes its libraries
  ``RTLD_GLOBAL``, the driver's LLVM binds to TensorFlow's symbols, and the
  process aborts at exit (``free(): invalid pointer`` in ``~cl::opt``).

:func:`load_tensorflow` avoids both: TensorFlow's libraries are loaded
``RTLD_LOCAL`` (its non-static builds support that) and, when a foreign LLVM is
already mapped, with ``RTLD_DEEPBIND`` so they prefer their own symbols.  On the
tensorflow backend it must run before Keras is imported, on the thread that owns the
GUI where there is one (the dlopen flags are process-wide);
:func:`napari_sam_keras.runtime.backend.import_keras` calls it then, and
:func:`napari_sam_keras.runtime.backend.import_keras_cv` before keras-cv.  It does
nothing once TensorFlow is imported.
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


def load_tensorflow() -> None:
    """Import TensorFlow so that a loaded (or later) OpenGL LLVM cannot crash it.

    On the tensorflow backend the Keras backend must be chosen first:
    :func:`napari_sam_keras.runtime.backend.import_keras` does both.
    """
    with _lock:
        if "tensorflow" in sys.modules:
            return
        deep = hasattr(os, "RTLD_DEEPBIND") and foreign_llvm_loaded()
        old_flags = sys.getdlopenflags()
        if deep:
            sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
        # TensorFlow makes its libraries RTLD_GLOBAL; an OpenGL LLVM loaded later would
        # bind to TensorFlow's LLVM symbols and abort the process at exit.  Without the
        # helper module TensorFlow loads them RTLD_LOCAL, which it supports.
        sys.modules.setdefault(_GLOBAL_FLAGS_MODULE, None)
        try:
            import tensorflow  # noqa: F401
        finally:
            if deep:
                sys.setdlopenflags(old_flags)
            if sys.modules.get(_GLOBAL_FLAGS_MODULE, 0) is None:
                del sys.modules[_GLOBAL_FLAGS_MODULE]
