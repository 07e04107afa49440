"""segment_batch: many images -> label images, like ``auto`` on each, resumable, on dask.

The tiny random SAM segments speckled masks; what is checked is that the batch path gives
exactly what ``napari-sam-keras auto`` gives for each file, that finished outputs are never
redone or half-written, and that bad inputs are reported while the others go on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import write_cell_images

from napari_sam_keras import cli
from napari_sam_keras.errors import ModelLoadError, SAMError
from napari_sam_keras.files.atomic_write import leftover_partials
from napari_sam_keras.files.batch_files import (
    find_inputs,
    output_names,
    read_label_output,
    read_output_record,
    read_summary,
)
from napari_sam_keras.files.ome_zarr import read_ome_zarr_labels, write_ome_zarr_labels
from napari_sam_keras.segmentation.batch import segment_batch

#: Fast generator settings that keep masks (the random model's scores are low).
OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
AUTO_ARGS = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


def auto_labels(image: Path, checkpoint: Path, out: Path, *extra: str) -> np.ndarray:
    """What ``napari-sam-keras auto`` writes for ``image``."""
    status = cli.main(["auto", str(image), "--model", str(checkpoint), *AUTO_ARGS, *extra,
                       "--out", str(out)])  # fmt: skip
    assert status == 0
    return tifffile.imread(out)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_cell_images(tmp_path_factory.mktemp("images"), 3)


@pytest.fixture(scope="module")
def reference(images, tiny_checkpoint, tmp_path_factory) -> dict[str, np.ndarray]:
    """``auto``'s label image of each input, by input name."""
    folder = tmp_path_factory.mktemp("auto")
    return {p.name: auto_labels(p, tiny_checkpoint, folder / f"{p.stem}.tif") for p in images}


def assert_outputs_equal(out_dir: Path, reference: dict[str, np.ndarray]) -> None:
    for name, expected in reference.items():
        got = tifffile.imread(out_dir / f"{Path(name).stem}-labels.tif")
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------- in-process


def test_batch_equals_auto_on_each_file_and_a_second_run_skips_all(
    images, reference, tiny_checkpoint, tmp_path
):
    out = tmp_path / "out"
    events = []
    summary = segment_batch(
        images[0].parent, out, model=tiny_checkpoint, progress=events.append, **OPTIONS
    )
    assert summary.ok and summary.count("done") == 3
    assert_outputs_equal(out, reference)
    rows = read_summary(out / "summary.csv")
    assert [Path(r["input"]).name for r in rows] == [p.name for p in images]
    assert {r["status"] for r in rows} == {"done"}
    for row in rows:
        labels = tifffile.imread(row["output"])
        assert int(row["objects"]) == np.unique(labels[labels > 0]).size
    # progress: per input (point batches) and overall
    assert events[-1].inputs_done == events[-1].inputs_total == 3
    assert any(e.current and e.steps_total and e.steps_done < e.steps_total for e in events)
    assert sum(e.row is not None for e in events) == 3

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*-labels.tif")}
    again = segment_batch(images[0].parent, out, model=tiny_checkpoint, **OPTIONS)
    assert again.ok and again.count("skipped") == 3
    assert again.model_loads == {}  # nothing to do: no model loaded, no output touched
    assert {p: p.stat().st_mtime_ns for p in out.glob("*-labels.tif")} == stamps
    assert [int(r["objects"]) for r in read_summary(out / "summary.csv")] == [
        int(r["objects"]) for r in rows
    ]


def test_bad_inputs_are_reported_and_the_others_written(
    images, reference, tiny_checkpoint, tmp_path
):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = folder / images[1].name
    good.write_bytes(images[1].read_bytes())
    (folder / "broken.tif").write_bytes(b"II*\x00 this is not a whole TIFF")
    np.save(folder / "four_d.npy", np.zeros((2, 2, 8, 8), np.uint8))
    tifffile.imwrite(folder / "stack.tif", np.zeros((2, 16, 16), np.uint8))
    out = tmp_path / "out"
    summary = segment_batch(
        [folder, tmp_path / "missing.tif", str(tmp_path / "none-*.png")],
        out,
        model=tiny_checkpoint,
        **OPTIONS,
    )
    assert not summary.ok
    status = {Path(r["input"]).name: (r["status"], r["message"]) for r in summary.rows}
    assert status[good.name] == ("done", "")
    assert status["broken.tif"][0] == "failed" and "broken.tif" in status["broken.tif"][1]
    assert (
        status["four_d.npy"][0] == "failed"
        and "without axis metadata: expected" in status["four_d.npy"][1]
    )
    assert status["stack.tif"][0] == "failed" and "--all-planes" in status["stack.tif"][1]
    assert status["missing.tif"] == ("failed", "no such file or folder")
    assert status["none-*.png"] == ("failed", "the pattern matches no files")
    np.testing.assert_array_equal(
        tifffile.imread(out / f"{good.stem}-labels.tif"), reference[good.name]
    )
    assert sorted(p.name for p in out.iterdir()) == [f"{good.stem}-labels.tif", "summary.csv"]
    assert len(read_summary(out / "summary.csv")) == 6


def test_stacks_with_all_planes_and_ome_zarr(tiny_checkpoint, tmp_path):
    """Plane z of the label stack is ``auto --plane z``, numbered after the planes before."""
    planes = write_cell_images(tmp_path / "planes", 2)
    stack = tmp_path / "in" / "stack.tif"
    stack.parent.mkdir()
    tifffile.imwrite(stack, np.stack([tifffile.imread(p) for p in planes]))
    expected = [
        auto_labels(stack, tiny_checkpoint, tmp_path / f"z{z}.tif", "--plane", str(z))
        for z in range(2)
    ]
    shift = int(expected[0].max())
    expected[1] = np.where(expected[1] > 0, expected[1] + shift, 0)

    for fmt in ("tiff", "ome-zarr"):
        out = tmp_path / fmt
        summary = segment_batch(
            stack, out, model=tiny_checkpoint, all_planes=True, output_format=fmt, **OPTIONS
        )
        assert summary.ok, summary.rows
        path = Path(summary.rows[0]["output"])
        assert path.name == ("stack-labels.tif" if fmt == "tiff" else "stack-labels.ome.zarr")
        labels = read_label_output(path)
        assert labels.shape == (2, 48, 64)
        np.testing.assert_array_equal(labels, np.stack(expected))
        assert read_output_record(path)["objects"] == summary.rows[0]["objects"]
    import zarr  # a dependency; an independent reader of our OME-Zarr (NGFF 0.5)

    group = zarr.open_group(tmp_path / "ome-zarr" / "stack-labels.ome.zarr", mode="r")
    ome = group.attrs["ome"]
    multiscales = ome["multiscales"][0]
    assert ome["version"] == "0.5"
    np.testing.assert_array_equal(group[multiscales["datasets"][0]["path"]][:], np.stack(expected))
    assert [a["name"] for a in multiscales["axes"]] == ["z", "y", "x"]


def test_an_output_made_with_other_settings_is_not_taken_as_done(
    images, reference, tiny_checkpoint, tmp_path
):
    out = tmp_path / "out"
    assert segment_batch(images[0], out, model=tiny_checkpoint, **OPTIONS).ok
    other = dict(OPTIONS, points_per_side=3)
    summary = segment_batch(images[0], out, model=tiny_checkpoint, **other)
    assert summary.rows[0]["status"] == "failed"
    assert "other settings (generator)" in summary.rows[0]["message"]
    # the output is the first run's, untouched
    np.testing.assert_array_equal(
        tifffile.imread(out / "cells_00-labels.tif"), reference[images[0].name]
    )
    redo = segment_batch(images[0], out, model=tiny_checkpoint, overwrite=True, **other)
    assert redo.rows[0]["status"] == "done"
    assert (
        read_output_record(out / "cells_00-labels.tif")["settings"]["generator"]["points_per_side"]
        == 3
    )
    # a file of another program under an output's name is reported, not overwritten
    foreign = out / "cells_01-labels.tif"
    tifffile.imwrite(foreign, np.ones((4, 4), np.uint8))
    row = segment_batch(images[1], out, model=tiny_checkpoint, **OPTIONS).rows[0]
    assert row["status"] == "failed" and "not written by a napari-sam-keras batch" in row["message"]
    assert tifffile.imread(foreign).shape == (4, 4)


def test_leftovers_of_a_killed_run_are_removed_and_never_taken_as_done(
    images, reference, tiny_checkpoint, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    half_file = out / ".cells_00-labels.k1ll3d_x.partial.tif"
    half_file.write_bytes(b"II*\x00half")
    half_zarr = out / ".cells_01-labels.ome.abcd_123.partial.zarr"
    (half_zarr / "0").mkdir(parents=True)
    assert leftover_partials(out / "cells_00-labels.tif") == [half_file]
    summary = segment_batch(images[:2], out, model=tiny_checkpoint, **OPTIONS)
    assert [r["status"] for r in summary.rows] == ["done", "done"]
    assert not half_file.exists()
    assert half_zarr.exists()  # another format's leftover is not this run's to remove
    segment_batch(images[:2], out / "z", model=tiny_checkpoint, output_format="ome-zarr", **OPTIONS)
    np.testing.assert_array_equal(
        read_ome_zarr_labels(out / "z" / "cells_00-labels.ome.zarr"), reference[images[0].name]
    )
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [half_zarr.name]


# --------------------------------------------------------------------- no model


def test_find_inputs_folders_patterns_and_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "img.tif").write_bytes(b"x")
    (a / "img.png").write_bytes(b"x")
    (a / "notes.txt").write_text("not an image")
    (a / ".hidden.tif").write_bytes(b"x")
    out = a / "labels"
    out.mkdir()
    (out / "img-labels.tif").write_bytes(b"x")
    files, problems = find_inputs(
        [a, str(tmp_path / "**" / "*.tif"), a / "img.tif", tmp_path / "nope"], exclude=out
    )
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "a/img.png",
        "a/img.tif",
        "b/img.tif",
    ]
    assert problems == [(str(tmp_path / "nope"), "no such file or folder")]
    assert output_names(files, "tiff") == [
        "a__img.png-labels.tif",
        "a__img.tif-labels.tif",
        "b__img.tif-labels.tif",
    ]
    assert output_names(files[:1], "ome-zarr") == ["img-labels.ome.zarr"]


def test_bad_arguments_fail_before_any_work(tmp_path, images):
    cases = [
        (dict(workers=0), "workers must be at least 1"),
        (dict(workers=2, scheduler="tcp://x:1"), "not both"),
        (dict(mode="tiles"), "unknown mode"),
        (dict(output_format="png"), "unknown output format"),
        (dict(points_per_side=0), "points_per_side must be at least 1"),
        (dict(crop_nms_threshold=0.5), "unknown generator option"),
        (dict(crop_nms_thresh="high"), "must be a number"),
        (dict(inputs=[]), "no inputs given"),
    ]
    for kwargs, message in cases:
        inputs = kwargs.pop("inputs", images[0])
        with pytest.raises(SAMError, match=message):
            segment_batch(inputs, tmp_path / "out", model=tmp_path, **kwargs)  # a folder model
    with pytest.raises(ModelLoadError, match="not found"):
        segment_batch(images[0], tmp_path / "out", model=tmp_path / "nope.pth")
    with pytest.raises(ModelLoadError, match="Don't know how to load"):  # an image is no model
        segment_batch(images[0], tmp_path / "out", model=images[0])
    assert not (tmp_path / "out").exists()


def test_ome_zarr_writer_chunks_and_an_independent_reader(tmp_path):
    import zarr

    labels = np.arange(1100 * 30, dtype=np.uint16).reshape(1100, 30)  # two chunks along y
    path = write_ome_zarr_labels(tmp_path / "x.ome.zarr", labels, {"note": {"a": 1}}, version="0.4")
    attrs = json.loads((path / ".zattrs").read_text())
    level0 = attrs["multiscales"][0]["datasets"][0]["path"]
    array = zarr.open_array(path / level0, mode="r")
    np.testing.assert_array_equal(array[:], labels)
    assert array.chunks == (1024, 30)
    np.testing.assert_array_equal(read_ome_zarr_labels(path), labels)
    assert attrs["note"] == {"a": 1}
    # written again: replaced whole, no leftovers, readable by others
    write_ome_zarr_labels(path, labels[:5], None)
    assert read_ome_zarr_labels(path).shape == (5, 30)
    assert [p.name for p in tmp_path.iterdir()] == ["x.ome.zarr"]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------- dask.distributed


def test_two_workers_give_the_in_process_outputs_and_load_the_model_once_each(
    images, reference, tiny_network, tiny_checkpoint, tmp_path
):
    """A LocalCluster of 2 processes: same label images; each worker process loaded the
    model once (its own count of ``load_model`` calls, sent with every row it returns).
    A stack's planes are spread over the workers (one task per plane) and assembled into
    the in-process label stack, atomically: no parts are left beside the outputs."""
    pytest.importorskip("distributed")
    del tiny_network  # loaded once here, so the workers find the converted weights cached
    write_cell_images(tmp_path / "more", 4)
    planes = [tifffile.imread(p) for p in write_cell_images(tmp_path / "planes", 3)]
    tifffile.imwrite(tmp_path / "more" / "stack.tif", np.stack(planes))
    expected_dir = tmp_path / "in-process"
    options = dict(OPTIONS, all_planes=True)
    segment_batch(tmp_path / "more", expected_dir, model=tiny_checkpoint, **options)
    out = tmp_path / "distributed"
    events = []
    summary = segment_batch(tmp_path / "more", out, model=tiny_checkpoint, workers=2,
                            progress=events.append, **options)  # fmt: skip
    assert summary.ok, summary.rows
    assert len(summary.rows) == 5
    for path in sorted(expected_dir.glob("*-labels.tif")):
        np.testing.assert_array_equal(tifffile.imread(out / path.name), tifffile.imread(path))
    stack = tifffile.imread(out / "stack-labels.tif")
    assert stack.shape == (3, 48, 64) and stack.max() > 0
    assert any(e.planes == 3 and e.row is None for e in events)  # planes came back one by one
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    workers = {w for r in summary.rows for w in r["worker"].split()}
    assert 1 <= len(workers) <= 2 and str(os.getpid()) not in {w.split(":")[1] for w in workers}
    assert summary.model_loads == dict.fromkeys(workers, 1)
    assert summary.cold_tasks == []  # each worker loaded it before its first task (plugin)
