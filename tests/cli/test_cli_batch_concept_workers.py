"""``batch --mode concept --workers 2``: SAM 3 on dask workers gives the in-process labels.

The workers load the tiny random SAM 3 from its Hugging Face folder themselves (the batch
hands them the folder, never a loaded model), through their worker plugin.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
from helpers import write_cell_images

from napari_sam_keras import cli
from napari_sam_keras.files.batch_files import read_summary

#: The concept of the other SAM 3 tests (same input shapes: one compile per process).
CONCEPT = ["--text", "cell", "--exemplar", "8,6,38,30", "--negative-exemplar", "52,24,84,54",
           "--score-threshold", "0"]  # fmt: skip


def test_batch_concept_on_two_workers_gives_the_in_process_labels(tmp_path, tiny_sam3, capsys):
    pytest.importorskip("distributed")
    write_cell_images(tmp_path / "in", 2, shape=(60, 90))
    args = ["batch", str(tmp_path / "in"), "--mode", "concept", "--model", str(tiny_sam3[0]),
            *CONCEPT]  # fmt: skip
    assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0, (
        capsys.readouterr()
    )
    expected = sorted((tmp_path / "one").glob("*-labels.tif"))
    assert len(expected) == 2
    for path in expected:
        labels = tifffile.imread(path)
        assert labels.max() > 0
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "two" / path.name), labels)
    rows = read_summary(tmp_path / "two" / "summary.csv")
    assert [row["status"] for row in rows] == ["done", "done"]
    assert all(row["worker"] and not row["worker"].endswith(f":{os.getpid()}") for row in rows)
