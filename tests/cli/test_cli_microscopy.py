"""Commands on microscopy files: planes by axis name, refusals before the model loads,
outputs with the input's pixel sizes (TIFF, OME-Zarr, inside an input OME-Zarr)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam_keras import cli
from napari_sam_keras.files.axis_readers import open_axis_image
from napari_sam_keras.segmentation.batch import segment_batch
from tests.cli.test_cli import run
from tests.microscopy_files import (
    array_bytes,
    blobs,
    imagej_hyperstack,
    ome_tiff,
    ome_zarr_image,
    read_with_ome_zarr_py,
    validate_ngff,
)

pytest.importorskip("ome_zarr")
AUTO = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture
def files(tmp_path):
    planes = np.stack([blobs(seed=s) for s in range(12)]).reshape(2, 3, 2, 48, 64)  # TZCYX
    return {
        "yxs": ome_tiff(
            tmp_path / "rgb.ome.tif",
            (blobs() // 16).astype(np.uint8)[..., None].repeat(3, -1),
            "YXS",
        ),
        "cyx": ome_tiff(tmp_path / "cyx.ome.tif", planes[0, 0], "CYX"),
        "tzyx": ome_tiff(tmp_path / "tzyx.ome.tif", planes[:, :, 0], "TZYX"),
        "hyper": imagej_hyperstack(tmp_path / "hyper.tif", planes),
        "zarr": ome_zarr_image(tmp_path / "img.ome.zarr", planes[:, :, 0], "TZYX"),
        "planes": planes,
    }


def test_axis_mismatches_stop_before_the_model_and_any_output(capsys, files, tmp_path):
    """A model that does not exist is never reached: the axis error comes first."""
    model = ["--model", tmp_path / "no-such-model.pth"]
    cases = [
        (["predict", files["yxs"], "--plane", "3", "--point", "5,5"], "has no z axis"),
        (["predict", files["cyx"], "--point", "5,5"], "has 2 channels: choose one with --channel"),
        (
            ["auto", files["cyx"], "--z", "1"],
            "no z axis: its channel axis (2) is chosen with --channel",
        ),
        (["auto", files["hyper"], "--channel", "0", "--z", "1"], "choose a plane with --t (0..1)"),
        (["auto", files["zarr"], "--t", "5", "--z", "0"], "--t 5 is outside 0..1"),
        (
            ["embed", files["tzyx"], "--all-planes", "--out", tmp_path / "s.zarr"],
            "--t (0..1) and --z",
        ),
        (["embed", files["cyx"], "--all-planes", "--out", tmp_path / "s.zarr"], "2 channels"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    zarr_before = array_bytes(files["zarr"])
    for argv, message in cases:
        status, _, err = run(capsys, *argv, *model)
        assert status == 2 and message in err, (argv, err)
        assert "no-such-model" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no label file, no store
    assert not (files["zarr"] / "labels").exists()
    assert array_bytes(files["zarr"]) == zarr_before


def test_auto_picks_planes_by_name_and_keeps_pixel_sizes(capsys, files, tiny_checkpoint, tmp_path):
    model = ["--model", tiny_checkpoint, *AUTO]
    # ImageJ TZCYX: t=1, z=2, c=1 is the same plane as the OME-Zarr TZYX's t=1, z=2 of c=0
    # written from it, so both label images are equal
    out = tmp_path / "hyper-labels.tif"
    status, _, err = run(
        capsys,
        "auto",
        files["hyper"],
        "--t",
        "1",
        "--z",
        "2",
        "--channel",
        "0",
        *model,
        "--out",
        out,
    )
    assert status == 0, err
    labels = open_axis_image(out)
    assert labels.axes == "YX"
    assert labels.pixel_sizes == {
        a: s for a, s in open_axis_image(files["hyper"]).pixel_sizes.items() if a in "YX"
    }
    single = tmp_path / "plane.tif"
    tifffile.imwrite(single, files["planes"][1, 2, 0])
    status, _, _ = run(capsys, "auto", single, *model, "--out", tmp_path / "plain.tif")
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(tmp_path / "plain.tif"))

    # an OME-Zarr input: the labels go into its labels/ group, the image's arrays untouched
    image = files["zarr"]
    before = array_bytes(image)
    status, _, err = run(capsys, "auto", image, "--t", "1", "--z", "2", *model)
    assert status == 0, err
    target = image / "labels" / cli.commands.OME_ZARR_LABELS_NAME
    assert array_bytes(image) == before
    validate_ngff(target, "0.5")
    _, problems = read_with_ome_zarr_py(image)
    assert problems == []
    written = open_axis_image(target)
    assert written.pixel_sizes == {
        a: s for a, s in open_axis_image(image).pixel_sizes.items() if a in "YX"
    }
    np.testing.assert_array_equal(np.asarray(written.data[...]), tifffile.imread(out))
    status, _, err = run(capsys, "auto", image, "--t", "1", "--z", "2", *model)
    assert status == 2 and "exists" in err  # never replaced unless --overwrite


def test_batch_stacks_by_axis_name_and_refuses_mismatches_before_loading(
    files, tiny_checkpoint, tmp_path
):
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    # every input mismatched: failed rows, no model loaded, no output
    summary = segment_batch(
        [files["cyx"], files["yxs"]], tmp_path / "bad", model=tiny_checkpoint, z=1, **options
    )
    assert [r["status"] for r in summary.rows] == ["failed", "failed"]
    assert "no z axis" in summary.rows[0]["message"] and summary.model_loads == {}
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["summary.csv"]
    # t=1 of a TZYX OME-TIFF, every z: a ZYX label stack with the input's Z, Y, X sizes
    summary = segment_batch(
        files["tzyx"],
        tmp_path / "out",
        model=tiny_checkpoint,
        t=1,
        all_planes=True,
        output_format="ome-zarr",
        **options,
    )
    assert summary.ok, summary.rows
    out = open_axis_image(summary.rows[0]["output"])
    assert out.axes == "ZYX" and out.shape == (3, 48, 64)
    assert out.pixel_sizes == {
        a: s for a, s in open_axis_image(files["tzyx"]).pixel_sizes.items() if a in "ZYX"
    }
    validate_ngff(summary.rows[0]["output"], "0.5")
