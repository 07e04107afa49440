"""The widgets' guard around the first import of the ML stack (see :mod:`..runtime.tensorflow_loading`)."""

from __future__ import annotations

from ..runtime.backend import import_ml_stack
from ..runtime.tensorflow_loading import foreign_llvm_loaded

__all__ = ["foreign_llvm_loaded", "import_ml_stack", "ml_stack_ready"]


def ml_stack_ready() -> bool:
    """Import the ML stack (see :func:`import_ml_stack`); report and return False on failure."""
    try:
        import_ml_stack()
    except Exception as error:
        from ..errors import ModelLoadError
        from .notifications import report_error

        report_error(ModelLoadError(f"Could not import TensorFlow / Keras / keras-cv: {error}"))
        return False
    return True
