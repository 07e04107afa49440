"""``napari-sam-keras batch``: exit status, log lines, progress bar, and a run killed while
writing an output, then resumed."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import tifffile
from helpers import run_cli as run
from helpers import write_cell_images

from napari_sam_keras.cli.commands import BatchDisplay
from napari_sam_keras.files.atomic_write import leftover_partials
from napari_sam_keras.files.batch_files import read_output_record, read_summary
from napari_sam_keras.segmentation.batch import BatchProgress, segment_batch

OPTIONS = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


def test_batch_is_listed_and_its_options_are_checked(capsys, tmp_path):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "batch" in out
    status, out, _ = run(capsys, "batch", "--help")
    assert status == 0
    for option in ("--out", "--all-planes", "--format", "--workers", "--scheduler", "--mode",
                   "--points-per-side", "--min-mask-region-area", "--crop-n-layers", "--prompts",
                   "--tile-shape", "--halo", "--planes-per-task", "--min-size"):  # fmt: skip
        assert option in out
    status, _, err = run(capsys, "batch", tmp_path, "--out", tmp_path / "o", "--workers", "2",
                         "--scheduler", "tcp://x:8786")  # fmt: skip
    assert status == 2 and "not allowed with argument" in err
    status, _, err = run(capsys, "batch", tmp_path, "--out", tmp_path / "o", "--points-per-side",
                         "0", "--model", tmp_path)  # fmt: skip
    assert status == 2 and "points_per_side must be at least 1" in err
    status, _, err = run(capsys, "batch", tmp_path, "--out", tmp_path / "o", "--model",
                         tmp_path / "missing.pth")  # fmt: skip
    assert status == 2 and "not found" in err


def test_exit_status_summary_and_log_lines(capsys, tiny_checkpoint, tmp_path):
    folder = tmp_path / "images"
    write_cell_images(folder, 2)
    (folder / "corrupt.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "labels"
    status, stdout, err = run(capsys, "batch", folder, "--out", out, "--model", tiny_checkpoint,
                              *OPTIONS)  # fmt: skip
    assert status == 1
    assert f"summary: {out / 'summary.csv'}" in stdout
    assert "3 inputs: 2 done, 0 skipped, 1 failed" in stdout
    assert "FAILED" in err and "corrupt.png" in err
    assert err.count("objects in") == 2  # one plain line per finished input (not a terminal)
    rows = {Path(r["input"]).name: r for r in read_summary(out / "summary.csv")}
    assert rows["corrupt.png"]["status"] == "failed" and rows["corrupt.png"]["message"]
    assert sorted(p.name for p in out.glob("*-labels.tif")) == [
        "cells_00-labels.tif",
        "cells_01-labels.tif",
    ]

    (folder / "corrupt.png").unlink()
    status, stdout, err = run(capsys, "batch", folder, "--out", out, "--model", tiny_checkpoint,
                              *OPTIONS)  # fmt: skip
    assert status == 0, err
    assert "2 inputs: 0 done, 2 skipped, 0 failed" in stdout


def test_progress_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    display = BatchDisplay(screen)
    display(BatchProgress(1, 4, current="/x/a.tif", plane=0, planes=2, steps_done=1, steps_total=4))
    row = {"input": "/x/a.tif", "output": "/o/a-labels.tif", "status": "done", "objects": 3,
           "seconds": 1.25, "worker": ""}  # fmt: skip
    display(BatchProgress(2, 4, row=row))
    display.close()
    text = screen.getvalue()
    assert "inputs [#####---------------] 1/4 | a.tif plane 1/2 [#####---------------]" in text
    assert "(2/4) done /x/a.tif -> /o/a-labels.tif: 3 objects in 1.2 s" in text
    assert "\r\033[K" in text  # the bar is redrawn in place


KILLED_WHILE_WRITING = textwrap.dedent(
    """
    import os, signal, sys
    import tifffile
    from napari_sam_keras import cli

    real_imwrite = tifffile.imwrite
    written = []

    def imwrite(path, data, *args, **kwargs):
        # the machine goes away while the third label image is half written
        real_imwrite(path, data, *args, **kwargs)
        written.append(path)
        if len(written) == 3:
            with open(path, "r+b") as fh:
                fh.truncate(os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    tifffile.imwrite = imwrite
    sys.exit(cli.main(sys.argv[1:]))
    """
)

RESUME_WITHOUT_DASK = textwrap.dedent(
    """
    import sys
    from napari_sam_keras import cli

    status = cli.main(sys.argv[1:])
    loaded = sorted(m for m in ("dask", "distributed") if m in sys.modules)
    print("dask modules:", loaded)
    sys.exit(status)
    """
)


def test_a_run_killed_while_writing_leaves_no_partial_output_and_the_rerun_completes(
    tiny_network, tiny_checkpoint, tmp_path
):
    del tiny_network  # converted weights cached for the subprocesses
    images = write_cell_images(tmp_path / "images", 5)
    out = tmp_path / "labels"
    argv = ["batch", str(images[0].parent), "--out", str(out), "--model", str(tiny_checkpoint),
            *OPTIONS]  # fmt: skip
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_WRITING, *argv], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = sorted(p.name for p in out.glob("*-labels.tif"))
    assert finished == ["cells_00-labels.tif", "cells_01-labels.tif"]
    half = leftover_partials(out / "cells_02-labels.tif")
    assert len(half) == 1  # the half-written file is there, under a name no one takes as done
    rows = {Path(r["input"]).name: r["status"] for r in read_summary(out / "summary.csv")}
    assert rows["cells_04.tif"] == "pending"

    resumed = subprocess.run(
        [sys.executable, "-c", RESUME_WITHOUT_DASK, *argv], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "5 inputs: 3 done, 2 skipped, 0 failed" in resumed.stdout
    assert "dask modules: []" in resumed.stdout  # in-process: no dask
    assert leftover_partials(out / "cells_02-labels.tif") == []
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []

    expected = tmp_path / "uninterrupted"
    segment_batch(
        images,
        expected,
        model=tiny_checkpoint,
        points_per_side=4,
        pred_iou_thresh=0,
        stability_score_thresh=0,
    )
    for path in sorted(expected.glob("*-labels.tif")):
        np.testing.assert_array_equal(tifffile.imread(out / path.name), tifffile.imread(path))
    assert len(list(expected.glob("*-labels.tif"))) == 5


def test_ctrl_c_writes_the_summary_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT) during a run: status 130, summary.csv says what is left to do."""
    images = write_cell_images(tmp_path / "images", 2)
    out = tmp_path / "labels"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from napari_sam_keras.segmentation.batch import modes
        from napari_sam_keras import cli

        def interrupted(*args, **kwargs):  # Ctrl-C while the model loads
            os.kill(os.getpid(), signal.SIGINT)
            raise AssertionError("not interrupted")

        modes.plane_segmenter = interrupted
        sys.exit(cli.main(sys.argv[1:]))
        """
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "batch",
            *map(str, images),
            "--out",
            str(out),
            *OPTIONS,
            "--model",
            "demo_nuclei",  # a name the resolver accepts; the model is never loaded here
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stderr
    assert [r["status"] for r in read_summary(out / "summary.csv")] == ["pending", "pending"]


def test_batch_takes_the_shipped_demo_model_by_name(capsys, tmp_path):
    """The batch runner names models as load_model does (one resolver): demo_nuclei works."""
    folder = tmp_path / "images"
    write_cell_images(folder, 1)
    out = tmp_path / "labels"
    status, stdout, err = run(capsys, "batch", folder, "--out", out, "--model", "demo_nuclei",
                              *OPTIONS)  # fmt: skip
    assert status == 0, err
    assert "1 inputs: 1 done" in stdout
    (row,) = read_summary(out / "summary.csv")
    assert row["status"] == "done"
    assert tifffile.imread(out / "cells_00-labels.tif").shape == (48, 64)
    assert read_output_record(out / "cells_00-labels.tif")["settings"]["model"] == "demo_nuclei"
