"""Choosing the Keras backend before Keras is first imported.

Keras 3 reads its backend once, at its first import, from ``KERAS_BACKEND``
(or ``~/.keras/keras.json``).  This module picks one for the user when they
have not, and reports clearly when Keras was already imported with another.
"""

from __future__ import annotations

import os
import sys

from ..errors import BackendError
from .tensorflow_loading import load_tensorflow

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")

#: Backend used when the user chose none: JAX is on par with TensorFlow in our
#: CPU benchmark (docs/benchmarks.md) and keeps TensorFlow's XLA, which clashes with
#: the OpenGL driver's LLVM, out of napari's process.
DEFAULT_BACKEND = "jax"

#: The project's own setting, read before ``KERAS_BACKEND``.
PROJECT_ENV_VAR = "NAPARI_SAM_KERAS_BACKEND"


def requested_backend() -> str:
    """The backend the user asked for (project setting, then Keras' own), or the default."""
    name = os.environ.get(PROJECT_ENV_VAR) or os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    name = name.strip().lower()
    if name not in SUPPORTED_BACKENDS:
        raise BackendError(
            f"Unknown Keras backend {name!r}; choose one of {', '.join(SUPPORTED_BACKENDS)} "
            f"with the {PROJECT_ENV_VAR} or KERAS_BACKEND environment variable."
        )
    return name


def ensure_backend(name: str | None = None) -> str:
    """Make Keras use backend ``name`` (or the requested one) and return it.

    Must run before Keras is imported.  If Keras is already imported with a
    different backend a :class:`BackendError` says how to fix it.
    """
    wanted = (name or requested_backend()).strip().lower()
    if wanted not in SUPPORTED_BACKENDS:
        raise BackendError(
            f"Unknown Keras backend {wanted!r}; choose one of {', '.join(SUPPORTED_BACKENDS)}."
        )
    if "keras" in sys.modules:
        import keras

        active = keras.backend.backend()
        if active != wanted:
            raise BackendError(
                f"Keras was already imported with the {active!r} backend, so {wanted!r} cannot "
                f"be used in this process. Set KERAS_BACKEND={wanted} (or "
                f"{PROJECT_ENV_VAR}={wanted}) before starting Python/napari, or import "
                "napari_sam_keras before anything that imports keras."
            )
        return active
    os.environ["KERAS_BACKEND"] = wanted
    return wanted


def import_ml_stack() -> None:
    """Choose the backend and import Keras, the OpenGL-safe way (see :mod:`.tensorflow_loading`).

    TensorFlow is imported first only on the tensorflow backend; jax and torch
    never import it.  Does nothing more once Keras is imported.
    """
    import_keras()


def import_keras():
    """Import Keras with the chosen backend and return it.

    On the tensorflow backend TensorFlow is loaded first, the OpenGL-safe way; on
    jax the persistent compilation cache is switched on
    (:mod:`.compilation_cache`).
    """
    backend = ensure_backend()  # before TensorFlow, which may import Keras
    if backend == "tensorflow" and "keras" not in sys.modules:
        load_tensorflow()
    import keras

    if backend == "jax":
        from .compilation_cache import enable_compilation_cache

        enable_compilation_cache()
    return keras


def import_keras_cv():
    """Import keras-cv (which imports TensorFlow whatever the backend), the OpenGL-safe way.

    Only a keras-cv preset needs it: the networks are the project's own layers.
    """
    ensure_backend()
    load_tensorflow()
    import_keras()
    import keras_cv

    return keras_cv
