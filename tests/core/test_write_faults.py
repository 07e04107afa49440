"""Fault injection: a full disk and a folder without permission while writing labels,
embedding stores, batch outputs and the converted-checkpoint cache; a kill at any point
of a write.  Each leaves no partial file, the old file or the new one, and one clear line.

The disk is made full at the operating-system level, for C libraries too (HDF5, zlib):
in a child process the file-size limit (``RLIMIT_FSIZE``) makes every ``write(2)`` past
it fail (``EFBIG``, as a quota would); where this machine lets us mount (root), a tiny
``tmpfs`` is filled up for a real ``ENOSPC`` and mounted read-only for ``EROFS``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import repo_env, write_cell_images

#: Runs ``napari-sam-keras`` commands in one process, each under its own file-size limit
#: (None: no limit); prints one JSON line per command: exit status and what it printed.
_RUNNER = textwrap.dedent(
    """
    import contextlib, io, json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
    from napari_sam_keras import cli
    for argv, limit in json.loads(sys.argv[1]):
        soft = resource.RLIM_INFINITY if limit is None else limit
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, resource.RLIM_INFINITY))
            try:
                status = cli.main(argv)
            finally:
                resource.setrlimit(
                    resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
                )
        print(json.dumps({"status": status, "out": out.getvalue(), "err": err.getvalue()}))
    sys.stdout.flush()
    import os
    os._exit(0)  # TensorFlow's exit-time destructors may crash; everything is printed
    """
)


def _env(cache: Path) -> dict[str, str]:
    return repo_env(NAPARI_SAM_KERAS_CACHE_DIR=str(cache))


def run_commands(plan: list[tuple[list, int | None]], cache: Path) -> list[dict]:
    plan = [([str(a) for a in argv], limit) for argv, limit in plan]
    child = subprocess.run(
        [sys.executable, "-c", _RUNNER, json.dumps(plan)],
        env=_env(cache),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]


def partials(folder: Path) -> list[Path]:
    """Temporary files of our atomic writes or zarr's, anywhere below ``folder``."""
    return [p for p in folder.rglob("*") if ".partial" in p.name]


def error_lines(result: dict) -> list[str]:
    return [line for line in result["err"].splitlines() if line.startswith("error:")]


def test_a_full_disk_leaves_no_partial_file_and_says_so_in_one_line(tiny_checkpoint, tmp_path):
    (image,) = write_cell_images(tmp_path / "in", 1, shape=(96, 120))
    plate = tmp_path / "plate"
    write_cell_images(plate, 1, shape=(256, 256))
    cache = tmp_path / "cache"
    old = tmp_path / "old-labels.tif"
    old.write_bytes(b"the labels of last week")
    model = ["--model", tiny_checkpoint]
    predict = ["predict", image, "--point", "50,40", *model]
    embed = ["embed", image, *model]
    speckles = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    batch = ["batch", plate, *model, *speckles]
    results = run_commands(
        [
            ([*predict, "--out", tmp_path / "labels.tif"], 100),  # labels
            ([*predict, "--out", old, "--overwrite"], 100),  # over an old file
            ([*embed, "--out", tmp_path / "s.zarr"], 6000),  # store: metadata fits, data not
            ([*batch, "--out", tmp_path / "ref"], None),  # to measure the outputs
        ],
        cache,
    )
    labels, over, store, reference = results

    for result in (labels, over):
        assert result["status"] == 2
        (line,) = error_lines(result)
        assert "no space left to write" in line and "nothing was left half-written" in line
    assert "labels.tif" in error_lines(labels)[0]
    assert not (tmp_path / "labels.tif").exists()
    assert old.read_bytes() == b"the labels of last week"

    assert store["status"] == 2
    (line,) = error_lines(store)
    assert "no space left to write" in line
    from napari_sam_keras.model.embedding_store import EmbeddingStore

    report = EmbeddingStore(tmp_path / "s.zarr").verify(tiles=1)
    assert report["complete"] == [] and report["corrupt"] == []
    assert partials(tmp_path) == []

    # batch: the summary fits, the label images do not
    assert reference["status"] == 0, reference["err"]
    summary_size = (tmp_path / "ref" / "summary.csv").stat().st_size
    output_size = min(p.stat().st_size for p in (tmp_path / "ref").glob("*-labels.tif"))
    assert summary_size < output_size
    (batch_full,) = run_commands(
        [([*batch, "--out", tmp_path / "out"], (summary_size + output_size) // 2)], cache
    )
    assert batch_full["status"] == 1
    from napari_sam_keras.files.batch_files import read_summary

    rows = read_summary(tmp_path / "out" / "summary.csv")
    assert [r["status"] for r in rows] == ["failed"]
    assert all("no space left to write" in r["message"] for r in rows)
    assert not list((tmp_path / "out").glob("*-labels.tif")) and partials(tmp_path) == []
    assert partials(cache) == []  # the converted checkpoint: cached whole or not at all


# ------------------------------------------------------------------ real file systems


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a tmpfs filled to the last byte (root only; else skipped)."""
    folder = tmp_path / "full"
    if not _mount_tmpfs(folder, "size=256k"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        try:
            with open(folder / "filler", "wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
        except OSError:  # full: the last flush (or the close) fails
            pass
        yield folder
    finally:
        _unmount(folder)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write to: read-only tmpfs (root), else a mode 0555 folder."""
    folder = tmp_path / "locked"
    if _mount_tmpfs(folder, "size=64k,ro"):
        try:
            yield folder
        finally:
            _unmount(folder)
        return
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions and cannot mount here")
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def test_a_really_full_disk_and_a_read_only_folder(tiny_checkpoint, tmp_path, request):
    (image,) = write_cell_images(tmp_path / "in", 1, shape=(96, 120))
    targets = {}
    for name in ("full_disk", "read_only_folder"):
        try:
            targets[name] = request.getfixturevalue(name)
        except pytest.skip.Exception:
            continue
    if not targets:
        pytest.skip("neither a full disk nor a read-only folder can be made here")
    model = ["--model", tiny_checkpoint]
    plan = []
    for folder in targets.values():
        plan += [
            (["predict", image, "--point", "50,40", *model, "--out", folder / "l.tif"], None),
            (["embed", image, *model, "--out", folder / "s.zarr"], None),
        ]
    results = run_commands(plan, tmp_path / "cache")
    for (name, folder), (labels, store) in zip(
        targets.items(), zip(results[::2], results[1::2], strict=True), strict=True
    ):
        want = "no space left" if name == "full_disk" else "no permission to write"
        for result in (labels, store):
            assert result["status"] == 2, result
            (line,) = error_lines(result)
            assert want in line, line
        assert not (folder / "l.tif").exists() and partials(folder) == []
        if (folder / "s.zarr").exists():
            from napari_sam_keras.model.embedding_store import EmbeddingStore

            left = EmbeddingStore(folder / "s.zarr")  # nothing, or nothing marked complete
            assert left.spec is None or left.verify(tiles=1)["complete"] == []


# ------------------------------------------------------------------ a kill at any point

_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import tifffile
    from napari_sam_keras.files.image_files import write_labels

    point, path = sys.argv[1], sys.argv[2]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if point == "while-writing":  # after the first bytes of the new file
        real_write = tifffile.FileHandle.write
        def write(self, data):
            real_write(self, data)
            die()
        tifffile.FileHandle.write = write
    else:
        real_replace = os.replace
        def replace(src, dst):
            if point == "before-rename":
                die()
            real_replace(src, dst)
            die()
        os.replace = replace
    write_labels(path, np.arange(96 * 120, dtype=np.uint32).reshape(96, 120) % 7)
    """
)


@pytest.mark.parametrize("point", ["while-writing", "before-rename", "after-rename"])
def test_a_kill_at_any_point_of_a_write_leaves_the_old_file_or_the_new_one(tmp_path, point):
    from napari_sam_keras.files.atomic_write import leftover_partials, remove_leftover_partials

    path = tmp_path / "labels.tif"
    old = np.ones((96, 120), np.uint8)
    tifffile.imwrite(path, old)
    new = (np.arange(96 * 120).reshape(96, 120) % 7).astype(np.uint8)
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, point, str(path)],
        env=_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    got = tifffile.imread(path)
    expected = new if point == "after-rename" else old
    np.testing.assert_array_equal(got, expected)
    # what a kill leaves is a temporary name, found and removed by the next run
    assert all(".partial" in p.name for p in leftover_partials(path))
    remove_leftover_partials(path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["labels.tif"]
