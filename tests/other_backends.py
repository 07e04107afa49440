"""Running the tests marked ``other_backends`` again on another Keras backend.

Keras fixes its backend at import, so each backend runs in one pytest process of its own
(one per backend, not one per test file: each start imports the whole ML stack), from
``tests/backends/test_on_tensorflow.py`` and ``tests/backends/test_on_torch.py`` (two files,
so that the two pytest-xdist workers take one each, first: ``backends`` is collected before
the other folders, and these are the longest files).  The main process runs everything on the
default backend (jax).  Mark a test with ``@pytest.mark.other_backends`` to add it here, or
``other_backends(backends=("tensorflow",))`` to limit it (tests/conftest.py deselects it on
the others), and list its file in :data:`FILES`.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import run_pytest_on_backend

ROOT = Path(__file__).resolve().parents[1]
FILES = [
    "tests/core/test_predictor_parity.py",
    "tests/core/test_prompt_compilation.py",
    "tests/core/test_tiny_vit.py",
    "tests/core/test_instance_decoder.py",
    "tests/core/test_finetune_modes.py",
    "tests/core/test_concept_segmenter.py",
    "tests/core/test_quantize.py",
]
#: Marked for tensorflow only: torch runs eagerly (nothing compiles).
TENSORFLOW_ONLY = {"test_prompt_compilation.py"}


def check_marked_tests_on(backend: str, tmp_path: Path) -> None:
    """Run the marked tests of :data:`FILES` on ``backend``; every one must pass."""
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
