"""The tests marked ``other_backends`` again on the tensorflow and torch backends.

Keras fixes its backend at import, so each backend runs in one pytest process of its own
(one per backend, not one per test file: each start imports the whole ML stack).  The main
process runs everything on the default backend (jax).  Mark a test with
``@pytest.mark.other_backends`` to add it here, or ``other_backends(backends=("tensorflow",))``
to limit it (tests/conftest.py deselects it on the others).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_pytest_on_backend

ROOT = Path(__file__).resolve().parents[2]
FILES = [
    "tests/core/test_predictor_parity.py",
    "tests/core/test_prompt_compilation.py",
    "tests/core/test_tiny_vit.py",
    "tests/core/test_instance_decoder.py",
    "tests/core/test_finetune_modes.py",
    "tests/core/test_concept_segmenter.py",
    "tests/core/test_quantize.py",
]
#: Marked for tensorflow only: torch runs eagerly (nothing compiles), and keras-hub's SAM 3
#: parity is checked on tensorflow.
TENSORFLOW_ONLY = {"test_prompt_compilation.py", "test_concept_segmenter.py"}


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_marked_tests_pass_on_backend(backend, tmp_path):
    stdout = run_pytest_on_backend(
        backend, ["-v", "-m", "other_backends", *FILES], ROOT, tmp_path / "cache", timeout=2400
    )
    summary = stdout.strip().splitlines()[-1]
    # a skip here would hide a backend that no longer runs the test: every one must pass
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, summary
    for path in FILES:  # each file ran its marked tests (-v -q: one line per file)
        name = Path(path).name
        if backend == "tensorflow" or name not in TENSORFLOW_ONLY:
            assert re.search(rf"{name} \.+", stdout), f"{name} ran nothing on {backend}"
