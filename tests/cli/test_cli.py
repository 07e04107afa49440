"""The ``napari-sam-keras`` command: parsing and errors (fast), end to end on a tiny model."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
from helpers import run_cli as run

from napari_sam_keras import cli
from napari_sam_keras.errors import ImageError
from napari_sam_keras.napari_adapter import INTERACTIVE_WIDGET


@pytest.fixture
def cells_tif(tmp_path):
    """A small uint16 grey image with two bright blobs."""
    yy, xx = np.mgrid[:48, :64]
    image = 200 + 3000 * ((yy - 15) ** 2 + (xx - 18) ** 2 < 60)
    image = image + 2000 * ((yy - 30) ** 2 + (xx - 45) ** 2 < 80)
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image.astype(np.uint16))
    return path


# --------------------------------------------------------------------- parsing, no model


def test_parse_point_and_box():
    assert cli.parse_point("10,20") == (10.0, 20.0, 1)
    assert cli.parse_point(" 10.5, 20 ,0") == (10.5, 20.0, 0)
    assert cli.parse_box("30,40,10,5") == (10.0, 5.0, 30.0, 40.0)
    assert cli.parse_pair("0,4095") == (0.0, 4095.0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--point", "10", "bad point '10': expected X,Y or X,Y,LABEL"),
        ("--point", "10,abc", "bad point '10,abc'"),
        ("--point", "1,2,3,4", "bad point '1,2,3,4'"),
        ("--point", "1,2,2", "LABEL must be 1 (foreground) or 0 (background)"),
        ("--point", "nan,2", "numbers must be finite"),
        ("--box", "1,2,3", "bad box '1,2,3': expected X0,Y0,X1,Y1"),
        ("--box", "1,2,1,9", "it has no area"),
        ("--contrast-limits", "5,1", "LO must be below HI"),
    ],
)
def test_bad_prompt_syntax_is_a_usage_error(capsys, cells_tif, option, value, message):
    status, out, err = run(capsys, "predict", cells_tif, option, value)
    assert status == 2
    assert message in err
    assert "Traceback" not in err


def test_unknown_command_and_backend(capsys):
    status, _, err = run(capsys, "segment", "x.tif")
    assert status == 2 and "invalid choice" in err
    status, _, err = run(capsys, "--backend", "numpy", "sample", "--out", "x.tif")
    assert status == 2 and "invalid choice" in err
    status, _, err = run(capsys)
    assert status == 2 and "COMMAND" in err


def test_help_lists_every_command(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("napari", "predict", "auto", "sample"):
        assert command in out
    status, out, _ = run(capsys, "predict", "--help")
    assert status == 0 and "--point X,Y[,LABEL]" in out and "--object" in out


def test_prompts_group_into_objects():
    parser = cli.build_parser()

    def objects(*argv):
        found = cli.objects_from_command_line(
            parser.parse_args(["predict", "a.tif", *argv]).prompts
        )
        return [
            {
                "points": []
                if o.point_coords is None
                else [
                    (*xy, int(lab))
                    for xy, lab in zip(o.point_coords.tolist(), o.point_labels, strict=True)
                ],
                "box": None if o.box is None else tuple(o.box.tolist()),
            }
            for o in found
        ]

    # points (and at most one box) form one object
    assert objects("--point", "1,2", "--point", "3,4,0", "--box", "0,0,9,9") == [
        {"points": [(1, 2, 1), (3, 4, 0)], "box": (0, 0, 9, 9)}
    ]
    # boxes alone: one object each
    assert objects("--box", "0,0,5,5", "--box", "6,6,9,9") == [
        {"points": [], "box": (0, 0, 5, 5)},
        {"points": [], "box": (6, 6, 9, 9)},
    ]
    # --object separates objects
    assert objects("--point", "1,2", "--object", "--point", "5,5", "--box", "4,4,8,8") == [
        {"points": [(1, 2, 1)], "box": None},
        {"points": [(5, 5, 1)], "box": (4, 4, 8, 8)},
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give at least one --point or --box"),
        (["--point", "1,2", "--box", "0,0,5,5", "--box", "6,6,9,9"], "only one box"),
        (["--object", "--point", "1,2"], "--object must follow the prompts of an object"),
        (["--point", "1,2,0"], "only background points"),
    ],
)
def test_bad_prompt_combinations(capsys, cells_tif, argv, message):
    status, _, err = run(capsys, "predict", cells_tif, *argv)
    assert status == 2
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_missing_image_file(capsys, tmp_path):
    missing = tmp_path / "nope.tif"
    for command in (["predict", missing, "--point", "1,1"], ["auto", missing]):
        status, _, err = run(capsys, *command)
        assert status == 2
        assert err.strip() == f"error: image file not found: {missing}"


def test_bad_output_path_fails_before_the_model_loads(capsys, cells_tif, tmp_path):
    no_dir = tmp_path / "no" / "labels.tif"
    status, _, err = run(capsys, "predict", cells_tif, "--point", "1,1", "--out", no_dir)
    assert status == 2 and err.strip() == f"error: output folder does not exist: {no_dir.parent}"
    status, _, err = run(capsys, "auto", cells_tif, "--out", tmp_path / "labels.bmp")
    assert status == 2 and "unsupported label file type '.bmp'" in err


@pytest.mark.parametrize(
    ("option", "value"),
    [("--points-per-side", 0), ("--points-per-batch", 0), ("--crop-n-layers", -1)],
)
def test_bad_auto_options(capsys, cells_tif, option, value):
    status, _, err = run(capsys, "auto", cells_tif, option, value)
    assert status == 2 and err.startswith(f"error: {option} must be at least")


def test_unreadable_image_and_stack_without_plane(capsys, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    status, _, err = run(capsys, "auto", bad)
    assert status == 2 and err.startswith(f"error: cannot read image {bad}")

    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((5, 16, 16), np.uint8))
    status, _, err = run(capsys, "auto", stack)
    assert status == 2 and "choose a plane with --z (0..4)" in err
    status, _, err = run(capsys, "auto", stack, "--plane", "7")
    assert status == 2 and "--z 7 is outside 0..4" in err


def test_select_plane_keeps_rgb_and_picks_planes():
    rgb = np.zeros((8, 9, 3), np.uint8)
    assert cli.select_plane(rgb, None, "x").shape == (8, 9, 3)
    stack = np.arange(3 * 8 * 9).reshape(3, 8, 9)
    np.testing.assert_array_equal(cli.select_plane(stack, 2, "x"), stack[2])
    with pytest.raises(ImageError, match="without axis metadata: expected"):
        cli.select_plane(np.zeros((2, 3, 8, 9)), 0, "x")


def test_unknown_model_is_one_line_error(capsys, cells_tif, tmp_path):
    status, _, err = run(
        capsys, "predict", cells_tif, "--point", "5,5", "--model", tmp_path / "missing.pth"
    )
    assert status == 2
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in err


def test_write_labels_dtype_and_formats(tmp_path):
    labels = np.zeros((4, 5), np.int64)
    labels[1, 1] = 3
    path = cli.write_labels(tmp_path / "l.tif", labels)
    assert tifffile.imread(path).dtype == np.uint8
    labels[2, 2] = 300
    assert tifffile.imread(cli.write_labels(tmp_path / "l.tif", labels)).dtype == np.uint16
    np.testing.assert_array_equal(np.load(cli.write_labels(tmp_path / "l.npy", labels)), labels)
    with pytest.raises(ImageError, match="unsupported label file type"):
        cli.write_labels(tmp_path / "l.bmp", labels)


def test_sample_command_writes_images(capsys, tmp_path):
    status, out, _ = run(capsys, "sample", "--out", tmp_path / "s.tif")
    assert status == 0 and "wrote" in out
    image = tifffile.imread(tmp_path / "s.tif")
    assert image.ndim in (2, 3)
    status, _, _ = run(capsys, "sample", "--stack", "--out", tmp_path / "z.tif")
    assert status == 0
    assert tifffile.imread(tmp_path / "z.tif").ndim >= 3


def test_core_commands_import_neither_napari_nor_qt(tmp_path):
    """The CLI is core-side: only the ``napari`` command may import napari or Qt."""
    code = textwrap.dedent(
        f"""
        import sys
        from napari_sam_keras.cli import main
        assert main(["--backend", "jax", "sample", "--out", {str(tmp_path / "s.tif")!r}]) == 0
        assert main(["predict", {str(tmp_path / "none.tif")!r}, "--point", "1,1"]) == 2
        import os
        assert os.environ["KERAS_BACKEND"] == "jax", os.environ["KERAS_BACKEND"]
        bad = [m for m in sys.modules if m.split(".")[0] in ("napari", "PyQt5", "qtpy", "vispy")]
        assert not bad, bad
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if "KERAS_BACKEND" not in k}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------- end to end, tiny model


def test_predict_end_to_end(capsys, tiny_checkpoint, cells_tif, tmp_path):
    out = tmp_path / "labels.tif"
    status, stdout, err = run(
        capsys,
        "predict",
        cells_tif,
        "--model",
        tiny_checkpoint,
        "--point",
        "18,15",
        "--point",
        "45,30,0",
        "--object",
        "--box",
        "35,20,56,41",
        "--out",
        out,
    )
    assert status == 0, err
    assert "object 1:" in stdout and "object 2:" in stdout and f"wrote {out}" in stdout
    labels = tifffile.imread(out)
    assert labels.shape == (48, 64) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}

    # several boxes alone: one batched call, one label each; default output name
    status, stdout, err = run(
        capsys,
        "predict",
        cells_tif,
        "--model",
        tiny_checkpoint,
        "--box",
        "5,5,30,25",
        "--box",
        "35,20,56,41",
        "--contrast-limits",
        "0,4000",
    )
    assert status == 0, err
    labels = tifffile.imread(tmp_path / "cells-labels.tif")
    assert labels.shape == (48, 64) and set(np.unique(labels)) <= {0, 1, 2}


def test_auto_end_to_end(capsys, tiny_checkpoint, cells_tif, tmp_path):
    out = tmp_path / "auto.npy"
    status, stdout, err = run(
        capsys,
        "auto",
        cells_tif,
        "--model",
        tiny_checkpoint,
        "--points-per-side",
        4,
        "--pred-iou-thresh",
        0,
        "--stability-score-thresh",
        0,
        "--out",
        out,
    )
    assert status == 0, err
    assert f"wrote {out}" in stdout
    labels = np.load(out)
    assert labels.shape == (48, 64) and labels.dtype.kind in "iu"
    objects = int(np.unique(labels[labels > 0]).size)
    assert f"({objects} objects)" in stdout  # the ids written are the objects reported


# --------------------------------------------------------------------- the napari command


@pytest.mark.gui
def test_open_viewer_docks_widget_and_sample(qtbot):
    viewer = cli.open_viewer(show=False)
    try:
        assert [layer.name for layer in viewer.layers][0] == "sample"
        docked = list(viewer.window.dock_widgets)
        assert any(INTERACTIVE_WIDGET in name for name in docked), docked
    finally:
        viewer.close()
