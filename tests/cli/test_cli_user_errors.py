"""Each user mistake of issue 15 is one ``error:`` line and exit status 2 on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tifffile
import torch
from helpers import run_cli as run


@pytest.fixture
def small_tif(tmp_path):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, (np.arange(48 * 64) % 997).astype(np.uint16).reshape(48, 64))
    return path


def _one_error_line(status, err, contains):
    assert status == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and contains in lines[-1], err
    assert "Traceback" not in err, err


def _partial_checkpoint(tiny_official, tmp_path):
    sam, _ = tiny_official
    state = {
        k: v for k, v in sam.state_dict().items() if k != "image_encoder.blocks.0.attn.rel_pos_h"
    }
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    return path


def _bad_json_keras(tiny_official, tmp_path):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", b"{not json")
        archive.writestr("model.weights.h5", b"")
    return path


@pytest.mark.parametrize(
    ("make", "contains"),
    [
        (_partial_checkpoint, "missing tensor 'image_encoder.blocks.0.attn.rel_pos_h'"),
        (_bad_json_keras, "not valid JSON"),
        (lambda official, tmp: "", "No model given"),
    ],
)
def test_bad_models(capsys, small_tif, tiny_official, tmp_path, make, contains):
    model = make(tiny_official, tmp_path)
    status, _, err = run(capsys, "predict", small_tif, "--point", "5,5", "--model", model)
    _one_error_line(status, err, contains)


def test_image_side_that_rounds_to_zero(capsys, tmp_path, tiny_checkpoint):
    thin = tmp_path / "thin.tif"
    tifffile.imwrite(thin, np.arange(5000, dtype=np.uint16)[None])
    status, _, err = run(capsys, "predict", thin, "--point", "10,0", "--model", tiny_checkpoint)
    _one_error_line(status, err, "would be 0 pixels")


def test_text_file_named_png(capsys, tmp_path):
    fake = tmp_path / "cells.png"
    fake.write_text("not an image")
    status, _, err = run(capsys, "auto", fake)
    _one_error_line(status, err, "it is not a .png image file")
    assert "pip install" not in err


def test_corrupt_tiff_prints_only_the_error(tmp_path):
    """tifffile's log lines would reach stderr through logging's last-resort handler."""
    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, np.zeros((48, 64), np.uint16))
    data = bytearray(bad.read_bytes())
    data[14:18] = b"\xff\xff\xff\x7f"
    bad.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "napari_sam_keras", "auto", str(bad)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read image {bad}"), lines
