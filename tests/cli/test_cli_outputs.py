"""The CLI never writes over its input, nor over an existing file unless ``--overwrite``."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
from helpers import run_cli as run


@pytest.fixture
def image(tmp_path):
    """A small uint16 image with one bright blob; returns its path."""
    yy, xx = np.mgrid[:40, :50]
    data = (300 + 3000 * ((yy - 20) ** 2 + (xx - 25) ** 2 < 80)).astype(np.uint16)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, data)
    return path


def _refused(capsys, argv, protected, message):
    before = {p: p.read_bytes() for p in protected}
    status, out, err = run(capsys, *argv)
    assert status == 2, (status, out, err)
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} was changed"


@pytest.mark.parametrize("command", [["predict", "--point", "25,20"], ["auto"]])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_that_is_the_input_is_refused(capsys, image, command, overwrite):
    argv = [command[0], image, *command[1:], *overwrite, "--out", image]
    _refused(capsys, argv, [image], "is the input file")


def test_relative_spelling_of_the_input_is_refused(capsys, image, monkeypatch):
    monkeypatch.chdir(image.parent)
    _refused(
        capsys,
        ["predict", "in.tif", "--point", "25,20", "--overwrite", "--out", "./in.tif"],
        [image],
        "is the input file",
    )
    _refused(
        capsys,
        ["auto", "./in.tif", "--overwrite", "--out", f"../{image.parent.name}/in.tif"],
        [image],
        "is the input file",
    )


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_link_to_the_input_is_refused(capsys, image, tmp_path, link):
    alias = tmp_path / f"{link}.tif"
    (os.symlink if link == "symlink" else os.link)(image, alias)
    _refused(
        capsys,
        ["predict", image, "--point", "25,20", "--overwrite", "--out", alias],
        [image],
        "is the input file",
    )
    # and the other way round: the input given through the link, the output as the file
    _refused(capsys, ["auto", alias, "--overwrite", "--out", image], [image], "is the input file")


def test_existing_default_output_is_kept(capsys, image):
    default = image.with_name("in-labels.tif")
    default.write_bytes(b"earlier results")
    _refused(capsys, ["predict", image, "--point", "25,20"], [image, default], "--overwrite")
    _refused(capsys, ["auto", image], [image, default], "--overwrite")


def test_existing_out_is_kept(capsys, image, tmp_path):
    out = tmp_path / "labels.npy"
    np.save(out, np.arange(3))
    _refused(capsys, ["auto", image, "--out", out], [image, out], f"{out} exists")


def test_sample_out_existing(capsys, tmp_path):
    out = tmp_path / "sample.tif"
    out.write_bytes(b"my data")
    _refused(capsys, ["sample", "--out", out], [out], f"{out} exists")
    status, stdout, err = run(capsys, "sample", "--out", out, "--overwrite")
    assert status == 0, err
    assert tifffile.imread(out).ndim >= 2
    assert [p.name for p in tmp_path.iterdir()] == ["sample.tif"], "a temporary file was left"


def test_overwrite_replaces_an_existing_output(capsys, image, tiny_checkpoint, tmp_path):
    out = tmp_path / "labels.tif"
    out.write_bytes(b"old labels")
    status, stdout, err = run(
        capsys,
        "predict",
        image,
        "--model",
        tiny_checkpoint,
        "--point",
        "25,20",
        "--out",
        out,
        "--overwrite",
    )
    assert status == 0, err
    labels = tifffile.imread(out)
    assert labels.shape == (40, 50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "labels.tif"]
