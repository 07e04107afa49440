"""Parity and compilation tests again on the other Keras backends.

Keras fixes its backend at import, so each backend runs in its own pytest
process.  The main process runs on the default backend (tensorflow).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FILES = ["test_predictor_parity.py", "test_prompt_compilation.py"]


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
def test_parity_on_backend(backend, tmp_path):
    import keras

    if backend == keras.backend.backend():
        pytest.skip("this process already runs the suite on this backend")
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, NAPARI_SAM_KERAS_BACKEND=backend)
    env["NAPARI_SAM_KERAS_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"{backend} backend failed:\n{tail}"
    assert " passed" in proc.stdout
