"""Build networks whose weights are about to be loaded without drawing random initial values.

Keras fills every new variable from its initializer.  On jax each initializer is a
random-number program compiled for its variable's shape, so building a ViT-B to load a
checkpoint into spent ~17 s of a cold start (2.4 s with plain zeros: issue 26), only for
the values to be overwritten.  Inside :func:`values_from_file` new variables of this
thread start as zeros instead; every load path that uses it assigns all of them
afterwards (a variable missing from the file is an error there, as before).

The hook replaces Keras' ``Variable._initialize_with_initializer`` once per process; outside
the context, on other threads, and where Keras has no such method (another version), it
changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

_STATE = threading.local()
_INSTALLED = False
_LOCK = threading.Lock()


@contextmanager
def values_from_file() -> Iterator[None]:
    """New Keras variables made in this block (this thread) start as zeros."""
    _install()
    previous = getattr(_STATE, "active", False)
    _STATE.active = True
    try:
        yield
    finally:
        _STATE.active = previous


def _install() -> None:
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        _INSTALLED = True
        try:
            from keras.src.backend.common.variables import Variable
        except ImportError:
            return
        original = getattr(Variable, "_initialize_with_initializer", None)
        if original is None:
            return

        def initialize(self, initializer):
            if getattr(_STATE, "active", False):
                try:
                    zeros = np.zeros(self._shape, dtype=self._dtype)
                except TypeError:  # a dtype numpy does not name (bfloat16): draw as usual
                    return original(self, initializer)
                return self._initialize(self._convert_to_tensor(zeros))
            return original(self, initializer)

        Variable._initialize_with_initializer = initialize
