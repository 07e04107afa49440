"""The widgets' import of the ML stack: in the background where it can be, safe for OpenGL.

On the jax and torch backends nothing imports TensorFlow, so Keras and the
backend are imported on a background thread as soon as a widget opens
(:func:`start_background_import`); the first click then finds them ready, and
the Qt thread never waits for them.  On the tensorflow backend TensorFlow must
be imported on the thread that owns the GUI (see
:mod:`..runtime.tensorflow_loading`), so :func:`ml_stack_ready` imports it there.
"""

from __future__ import annotations

import threading

from ...runtime.backend import import_ml_stack, requested_backend
from ...runtime.tensorflow_loading import foreign_llvm_loaded

__all__ = [
    "background_import_message",
    "foreign_llvm_loaded",
    "import_ml_stack",
    "ml_stack_ready",
    "start_background_import",
]

_lock = threading.Lock()
_state: dict = {"thread": None, "error": None}


def _import_in_background() -> None:
    try:
        import_ml_stack()
    except Exception as error:  # reported by ml_stack_ready on the Qt thread
        _state["error"] = error


def background_import_message() -> str:
    """What the background import is doing, for the status line ("" when done or never begun)."""
    thread = _state["thread"]
    if thread is None or not thread.is_alive():
        return ""
    return f"importing Keras and {requested_backend()} in the background..."


def start_background_import() -> bool:
    """Import Keras and its backend on a background thread (not on tensorflow); once per process.

    Returns whether an import is (now) running in the background.
    """
    try:
        backend = requested_backend()
    except Exception:  # a bad setting: ml_stack_ready reports it on first use
        return False
    if backend == "tensorflow":
        return False
    import sys

    with _lock:
        if _state["thread"] is None and "keras" not in sys.modules:
            thread = threading.Thread(
                target=_import_in_background, name="sam-import-ml-stack", daemon=True
            )
            _state["thread"] = thread
            thread.start()
    thread = _state["thread"]
    return thread is not None and thread.is_alive()


def ml_stack_ready() -> bool:
    """Import the ML stack (see :func:`import_ml_stack`); report and return False on failure.

    While the background import still runs this returns True at once: the job
    that follows waits for it on its own worker thread (Python's import lock),
    so the Qt thread never does.
    """
    thread = _state["thread"]
    if thread is not None and thread.is_alive():
        return True
    try:
        if _state["error"] is not None:
            raise _state["error"]
        import_ml_stack()
    except Exception as error:
        from ...errors import ModelLoadError
        from ..widget_parts.notifications import report_error

        report_error(ModelLoadError(f"Could not import Keras and its backend: {error}"))
        return False
    return True
