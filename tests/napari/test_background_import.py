"""The widgets' background import of Keras and its backend (a fresh process: Keras not yet
imported there, unlike in the test session)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys
from napari_sam_keras.napari_adapter.background import safe_import
assert "keras" not in sys.modules
assert safe_import.start_background_import()
assert safe_import.background_import_message() == "importing Keras and jax in the background..."
assert safe_import.ml_stack_ready()  # at once: the job waits on its own thread
safe_import._state["thread"].join()
assert safe_import.background_import_message() == ""
assert "keras" in sys.modules and "jax" in sys.modules
assert "tensorflow" not in sys.modules
assert not safe_import.start_background_import()  # once per process
print("OK")
"""


def test_keras_is_imported_in_the_background_without_tensorflow():
    env = dict(os.environ, KERAS_BACKEND="jax", NAPARI_SAM_KERAS_BACKEND="jax")
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr[-3000:]
