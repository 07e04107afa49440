"""``auto --mode concept`` and ``batch --mode concept``: SAM 3's "find all like the examples"."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam_keras import cli


def run(capsys, *argv):
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cells_tif(tmp_path):
    yy, xx = np.mgrid[:60, :90]
    image = 300 + 3000 * ((yy - 18) ** 2 + (xx - 23) ** 2 < 120)
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image.astype(np.uint16))
    return path


def _one_error(status, err, contains):
    assert status == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and contains in lines[-1], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "No concept given"),
        (["--exemplar", "10,10,200,30"], "outside the image"),
        (["--text", "cell", "--score-threshold", "2"], "score threshold"),
    ],
)
def test_bad_concept_prompts_fail_before_loading(capsys, cells_tif, tmp_path, extra, message):
    out = tmp_path / "labels.tif"
    status, _, err = run(
        capsys, "auto", cells_tif, "--mode", "concept", "--model", tmp_path, "--out", out, *extra
    )
    _one_error(status, err, message)
    assert not out.exists()


def test_a_sam1_checkpoint_is_refused(capsys, cells_tif, tmp_path, tiny_checkpoint):
    out = tmp_path / "labels.tif"
    status, _, err = run(
        capsys,
        "auto",
        cells_tif,
        "--mode",
        "concept",
        "--model",
        tiny_checkpoint,
        "--text",
        "cell",
        "--out",
        out,
    )
    _one_error(status, err, "not a SAM 3 model")
    assert not out.exists()


def test_the_gated_preset_says_where_to_get_the_weights(capsys, cells_tif, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "")  # no credentials, no network here
    status, _, err = run(
        capsys,
        "auto",
        cells_tif,
        "--mode",
        "concept",
        "--text",
        "cell",
        "--out",
        tmp_path / "l.tif",
    )
    _one_error(status, err, "huggingface.co/facebook/sam3")


def test_batch_concept_writes_the_segmenters_labels(tmp_path, cells_tif, tiny_concept_model):
    from napari_sam_keras import ConceptSegmenter, segment_batch

    boxes = [(8, 6, 38, 30), (52, 24, 84, 54)]  # the shapes of the other SAM 3 tests
    concept = {"text": "cell", "exemplars": boxes, "exemplar_labels": [1, 0], "score_threshold": 0}
    summary = segment_batch(
        [cells_tif], tmp_path / "out", model=tiny_concept_model, mode="concept", concept=concept
    )
    assert summary.ok, summary.rows
    written = tifffile.imread(tmp_path / "out" / "cells-labels.tif")
    masks = (
        ConceptSegmenter(tiny_concept_model)
        .predict(tifffile.imread(cells_tif), "cell", [(8, 6, 38, 30)], score_threshold=0.0)
        .masks
    )
    assert written.max() > 0
    assert np.array_equal(written > 0, masks.any(axis=0))
