"""``benchmarks/make_table.py``: the quick table is written between its markers in
docs/benchmarks.md and the table it replaces is kept as history (no benchmark runs here)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_table():
    spec = importlib.util.spec_from_file_location(
        "make_table", ROOT / "benchmarks" / "make_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MACHINE = {"cpu": "Some CPU", "cores": 2, "flags": ["avx2", "fma"], "memory_gib": 8.0}
MACHINE.update(load=[1.0, 1.0, 1.0], load_end=[2.0, 2.0, 2.0])
EMBEDDING = {
    "median_s": {"ours_vit_t": 1.0, "mobile_sam": 2.0, "ours_vit_b": 8.0},
    "first_s": {"ours_vit_t": 3.0, "mobile_sam": 2.0, "ours_vit_b": 9.0},
    "vit_t_over_mobile_sam": 0.5,
    "vit_t_over_vit_b": 0.125,
}
DECODER = {"ours": 1.0, "torch_em": 4.0}


def test_table_replaces_the_last_one_and_keeps_it_as_history():
    mt = _make_table()
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert mt.START in page and mt.END in page and mt.HISTORY in page
    args = argparse.Namespace(repeats=3)
    first = mt.render(MACHINE, {"jax": "0.1"}, {"jax": EMBEDDING}, {"jax": DECODER}, args)
    assert "| 0.50 | <= 0.6 |" in first and "| 0.12 | <= 0.2 |" in first  # ratios
    assert "| 0.25 | <= 0.6 |" in first and "Some CPU, 2 logical cores" in first
    assert "avx2, fma" in first
    once = mt.updated_doc(page, first)
    second = first.replace("Some CPU", "Other CPU")
    twice = mt.updated_doc(once, second)
    current = twice.split(mt.START)[1].split(mt.END)[0]
    history = twice.split(mt.HISTORY)[1]
    assert "Other CPU" in current and "Some CPU" not in current
    assert "Some CPU" in history and "Other CPU" not in history
    # everything of the page outside the generated part is unchanged
    assert twice.split(mt.START)[0] == page.split(mt.START)[0]
    failed = mt.render(MACHINE, {}, {"jax": {"error": "boom"}}, {}, args)
    assert "failed" in failed and "boom" in failed
