"""The command line's part of issue 23: every argument that can be checked without the
model is checked before it loads, a store never made in a folder of files, one writer per
store, the pixel limit's flag, and one clear line per problem (library noise counted)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from helpers import repo_env, run_cli, write_cell_images

from napari_sam_keras.cli import library_noise


@pytest.fixture
def image(tmp_path) -> Path:
    (path,) = write_cell_images(tmp_path / "in", 1, shape=(96, 120))
    return path


def _refused_before_the_model(status: int, err: str, match: str) -> None:
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err
    assert "loaded" not in err  # the model was never loaded


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["predict", "{image}", "--point", "50,40", "--embeddings", "{file}"], "is a file"),
        (["auto", "{image}", "--embeddings", "{file}"], "is a file"),
        (["auto", "{image}", "--mode", "ais", "--min-size", "-1"], "--min-size must be at least 0"),
        (
            ["auto", "{image}", "--mode", "ais", "--center-distance-thresh", "-0.2"],
            "--center-distance-thresh must be a number of at least 0",
        ),
        (["auto", "{image}", "--pred-iou-thresh", "-1"], "--pred-iou-thresh must be"),
        (["embed", "{image}", "--out", "{lab}"], "is not empty"),
        (["predict", "{image}", "--point", "5,5", "--max-pixels", "100"], "--tile-shape"),
    ],
)
def test_arguments_are_checked_before_the_model_loads(
    capsys, tiny_checkpoint, image, tmp_path, argv, match
):
    file = tmp_path / "notes.txt"
    file.write_text("not a store")
    lab = tmp_path / "lab"
    zarr.open_group(str(lab), mode="w")
    (lab / "results.csv").write_text("a,b\n1,2\n")
    names = {"image": image, "file": file, "lab": lab}
    argv = [a.format(**names) for a in argv] + ["--model", tiny_checkpoint]
    status, _, err = run_cli(capsys, *argv)
    _refused_before_the_model(status, err, match)
    assert (lab / "results.csv").read_text() == "a,b\n1,2\n"


def test_a_box_without_area_is_refused_by_the_core_rule_before_the_model(
    capsys, tiny_checkpoint, image
):
    argv = ["predict", image, "--box", "10,10,10.5,40", "--model", tiny_checkpoint]
    status, _, err = run_cli(capsys, *argv)
    assert status == 2 and "loaded" not in err
    assert "bad box '10,10,10.5,40': it has no area" in err.splitlines()[-1]


def test_batch_with_its_input_as_output_says_so(capsys, tmp_path):
    plate = tmp_path / "plate"
    write_cell_images(plate, 2)
    status, _, err = run_cli(capsys, "batch", plate, "--out", plate)
    assert status == 2
    assert "are the output folder" in err and "no inputs given" not in err


def test_batch_reports_a_decompression_bomb_as_a_failed_row(capsys, tiny_checkpoint, tmp_path):
    plate = tmp_path / "plate"
    write_cell_images(plate, 1)
    bomb = plate / "bomb.tif"
    tifffile.imwrite(bomb, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(bomb, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(40000)
        tif.pages[0].tags["ImageLength"].overwrite(40000)
    argv = ["batch", plate, "--out", tmp_path / "out", "--model", tiny_checkpoint]
    status, out, err = run_cli(capsys, *argv, "--points-per-side", "2")
    assert status == 1
    assert "FAILED" in err and "bomb.tif" in err and "--max-pixels" in err
    assert "1 done" in out and "1 failed" in out


def test_a_second_embed_on_a_store_being_written_is_refused(
    capsys, tiny_checkpoint, image, tmp_path
):
    from napari_sam_keras.model.embedding_store import EmbeddingStore

    store = tmp_path / "cells.zarr"
    env = repo_env()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom napari_sam_keras.model.embedding_store import EmbeddingStore\n"
            "s = EmbeddingStore(sys.argv[1]); s.lock_for_writing(); print('locked', flush=True)\n"
            "sys.stdin.read()",
            str(store),
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, _, err = run_cli(capsys, "embed", image, "--out", store, "--model", tiny_checkpoint)
        _refused_before_the_model(status, err, "Another process is writing the store")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    status, out, err = run_cli(capsys, "embed", image, "--out", store, "--model", tiny_checkpoint)
    assert status == 0, err
    assert "1 embedding(s) computed" in out
    assert EmbeddingStore(store).verify(tiles=1)["complete"] == [(0, 0)]


# ------------------------------------------------------------------------- terminal noise


def _tiff_with_a_bad_tag(path: Path) -> Path:
    """A readable TIFF with one tag of an unknown type: tifffile logs a warning about it."""
    tifffile.imwrite(path, np.zeros((32, 32), np.uint16), extratags=[(65000, "s", 0, "x", True)])
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].tags[65000].offset
    raw = bytearray(path.read_bytes())
    raw[offset + 2 : offset + 4] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    return path


def test_library_log_lines_are_counted_in_one_line_and_shown_with_verbose(tmp_path):
    noisy = _tiff_with_a_bad_tag(tmp_path / "noisy.tif")
    (tmp_path / "notes.txt").write_text("not a store")
    argv = ["predict", noisy, "--point", "10,10", "--embeddings", tmp_path / "notes.txt"]
    env = repo_env()

    def command(*extra):
        return subprocess.run(
            [sys.executable, "-m", "napari_sam_keras", *extra, *map(str, argv)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    quiet = command()
    assert quiet.returncode == 2
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 2, quiet.stderr
    assert lines[0].startswith("error:") and "is a file" in lines[0]
    assert lines[1].startswith("note: ") and "tifffile" in lines[1] and "--verbose" in lines[1]
    verbose = command("--verbose")
    assert verbose.returncode == 2 and "invalid data type 99" in verbose.stderr


def test_dask_and_child_process_noise_is_kept_back(capfd):
    distributed = pytest.importorskip("distributed")  # configures its own terminal handler
    del distributed
    with library_noise.captured() as noise:
        logging.getLogger("distributed.node").warning("Port 8787 is already in use.")
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import warnings; warnings.warn('resource_tracker: There appear to be 3 "
                "leaked semaphore objects to clean up at shutdown')",
            ],
            capture_output=True,
            text=True,
        )
        warnings.warn("a library's deprecation", UserWarning, stacklevel=1)
    assert child.stderr == ""
    assert noise.counts["distributed"] == 1 and sum(noise.counts.values()) == 2
    assert "8787" not in capfd.readouterr().err
    assert "run with --verbose" in noise.summary()
