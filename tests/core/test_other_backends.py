"""Parity and compilation tests again on the other Keras backends.

Keras fixes its backend at import, so each backend runs in its own pytest
process.  The main process runs on the default backend (jax).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_pytest_on_backend

HERE = Path(__file__).parent
FILES = ["test_predictor_parity.py", "test_prompt_compilation.py"]


@pytest.mark.parametrize("backend", ["jax", "torch", "tensorflow"])
def test_parity_on_backend(backend, tmp_path):
    stdout = run_pytest_on_backend(backend, FILES, HERE, tmp_path / "cache")
    assert " passed" in stdout
