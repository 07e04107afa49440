"""``batch`` in every mode: the instance decoder (``--mode ais``), prompts from a CSV or
GeoJSON file, and tiles; each output equal to what the single-image command writes for
that file.  (The planes of a stack spread over dask workers: the one dask test, in
``tests/core/test_batch.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import run_cli as run
from helpers import write_cell_images

from napari_sam_keras.files.atomic_write import partial_directory
from napari_sam_keras.files.batch_files import read_output_record, read_summary
from napari_sam_keras.segmentation.batch import read_prompts_file, segment_batch

#: The watershed thresholds of the AIS tests: a random decoder finds a few objects with them.
AIS = ["--min-size", "0", "--center-distance-thresh", "0.5", "--boundary-distance-thresh", "0.5"]
TILES = ["--tile-shape", "32,32", "--halo", "8,8"]


@pytest.fixture(scope="module")
def ais_model(tmp_path_factory):
    """The demo model with a new (random) instance decoder, saved as a model folder that
    ``load_model`` (and every dask worker) reads."""
    from napari_sam_keras import load_model, save_model
    from napari_sam_keras.model.decoder_conversion import (
        DecoderConfig,
        InstanceDecoder,
        build_instance_decoder,
    )
    from napari_sam_keras.runtime.backend import import_keras

    net = load_model("demo_nuclei")
    c = net.config.prompt_embed_dim
    config = DecoderConfig(embed_dim=c, features=(2 * c, c, c // 2, c // 4))
    # seeded: a random decoder's objects depend on its weights (seed 1: 9 per test image)
    import_keras().utils.set_random_seed(1)
    net.instance_decoder = InstanceDecoder(build_instance_decoder(config), config, key="test")
    return save_model(net, tmp_path_factory.mktemp("models") / "demo_ais")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_cell_images(tmp_path_factory.mktemp("images") / "cells", 2)


def _single(capsys, command, image, out, *argv):
    status, _, err = run(capsys, command, image, "--out", out, *argv)
    assert status == 0, err
    return np.load(out)


def test_batch_ais_equals_auto_ais_whole_and_tiled(capsys, ais_model, images, tmp_path):
    for extra, name in (([], "whole"), (TILES, "tiled")):
        out = tmp_path / name
        status, stdout, err = run(capsys, "batch", images[0].parent, "--out", out, "--model",
                                  ais_model, "--mode", "ais", *AIS, *extra)  # fmt: skip
        assert status == 0, err
        assert "2 inputs: 2 done" in stdout
        found = 0
        for image in images if not extra else images[:1]:  # tiled: one image is enough
            expected = _single(capsys, "auto", image, tmp_path / f"{image.stem}-{name}.npy",
                               "--model", ais_model, "--mode", "ais", *AIS, *extra)  # fmt: skip
            written = tifffile.imread(out / f"{image.stem}-labels.tif")
            np.testing.assert_array_equal(written, expected)
            found += int(expected.max())
        assert found > 0  # the comparison is not between empty images
        settings = read_output_record(out / "cells_00-labels.tif")["settings"]
        assert settings["mode"] == "ais" and settings["generator"]["min_size"] == 0
        assert ("tiles" in settings) == bool(extra)


PROMPTS_CSV = """image,kind,x,y,label,x0,y0,x1,y1,object
cells_00.tif,point,20,16,,,,,,
cells_00.tif,box,,,,30,8,60,40,
cells_00.tif,point,12,30,1,,,,,cell
cells_00.tif,point,40,30,0,,,,,cell
cells_00.tif,box,,,,4,20,28,44,cell
cells/cells_01.tif,box,,,,10,10,40,40,
"""

#: The same prompts on the command line of ``predict``, image by image.
PREDICT_ARGS = {
    "cells_00": ["--point", "20,16", "--object", "--box", "30,8,60,40", "--object",
                 "--point", "12,30", "--point", "40,30,0", "--box", "4,20,28,44"],
    "cells_01": ["--box", "10,10,40,40"],
}  # fmt: skip


def _geojson(path: Path) -> Path:
    def box(x0, y0, x1, y1):
        return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1],
                                                    [x0, y0]]]}  # fmt: skip

    def feature(geometry, **props):
        return {"type": "Feature", "geometry": geometry, "properties": props}

    features = [
        feature({"type": "Point", "coordinates": [20, 16]}, image="cells_00.tif"),
        feature(box(30, 8, 60, 40), image="cells_00.tif"),
        feature({"type": "Point", "coordinates": [12, 30]}, image="cells_00.tif", object=7),
        feature(
            {"type": "Point", "coordinates": [40, 30]}, image="cells_00.tif", object=7, label=0
        ),  # fmt: skip
        feature(box(4, 20, 28, 44), image="cells_00.tif", object=7),
        feature(box(10, 10, 40, 40), image="cells_01.tif"),
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_batch_prompts_file_equals_predict(capsys, images, tmp_path):
    folder = images[0].parent
    csv_file = folder.parent / "prompts.csv"  # cells/cells_01.tif: relative to this file
    csv_file.write_text(PROMPTS_CSV)
    geojson_file = _geojson(tmp_path / "prompts.geojson")
    for prompts, extra, name in ((csv_file, [], "csv"), (csv_file, TILES, "tiled"),
                                 (geojson_file, [], "geojson")):  # fmt: skip
        out = tmp_path / name
        status, stdout, err = run(capsys, "batch", folder, "--out", out, "--model",
                                  "demo_nuclei", "--prompts", prompts, *extra)  # fmt: skip
        assert status == 0, err
        assert "2 inputs: 2 done" in stdout
        for image in {"csv": images, "tiled": images[:1], "geojson": []}[name]:
            expected = _single(capsys, "predict", image, tmp_path / f"{image.stem}-{name}.npy",
                               "--model", "demo_nuclei", *PREDICT_ARGS[image.stem], *extra)  # fmt: skip
            written = tifffile.imread(out / f"{image.stem}-labels.tif")
            np.testing.assert_array_equal(written, expected)
        labels = tifffile.imread(out / "cells_00-labels.tif")
        assert 0 < labels.max() <= 3  # one label per object, in the file's order
    for image in images:  # the same prompts as GeoJSON: the same labels
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "geojson" / f"{image.stem}-labels.tif"),
            tifffile.imread(tmp_path / "csv" / f"{image.stem}-labels.tif"),
        )


def _bad(tmp_path: Path, text: str, suffix: str = ".csv") -> Path:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    return path


HEAD = "image,kind,x,y,label,x0,y0,x1,y1,object\n"


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("image,x,y\ncells_00.tif,1,2\n", ".csv", "no kind column"),
        (HEAD + "cells_00.tif,circle,1,2,,,,,,\n", ".csv", "line 2: kind must be point or box"),
        (HEAD + "cells_00.tif,box,,,,10,10,10,40,\n", ".csv", "line 2: the box has no area"),
        (HEAD + "cells_00.tif,point,1,2,2,,,,,\n", ".csv", "must be 1 (foreground) or 0"),
        (HEAD + "cells_00.tif,point,1,x,,,,,,\n", ".csv", "y must be a finite number"),
        (HEAD + "other.tif,point,1,2,,,,,,\n", ".csv", "'other.tif' is not among the inputs"),
        (HEAD + "cells_00.tif,point,100,2,,,,,,\n", ".csv", "outside the image"),
        (HEAD + "cells_00.tif,point,1,2,0,,,,,\n", ".csv", "only background points"),
        (
            HEAD + "cells_00.tif,box,,,,1,1,9,9,a\ncells_00.tif,box,,,,2,2,9,9,a\n",
            ".csv",
            "has a second box",
        ),  # fmt: skip
        (HEAD, ".csv", "holds no prompts"),
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
            '{"image": "cells_00.tif"}, "geometry": {"type": "LineString", "coordinates": '
            "[[1, 2], [3, 4]]}}]}",
            ".geojson",
            "feature 0: a LineString geometry",
        ),  # fmt: skip
        ("{not json", ".geojson", "is not valid JSON"),
        ("x", ".txt", "neither CSV nor GeoJSON"),
    ],
)
def test_a_bad_prompts_file_is_one_error_before_any_work(capsys, images, tmp_path, text,
                                                         suffix, message):  # fmt: skip
    prompts = _bad(tmp_path, text, suffix)
    out = tmp_path / "out"
    status, _, err = run(capsys, "batch", images[0].parent, "--out", out, "--model",
                         "demo_nuclei", "--prompts", prompts)  # fmt: skip
    assert status == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], err
    assert "Traceback" not in err
    assert not out.exists()  # nothing made, no model loaded


def test_prompts_file_options_that_do_not_go_together(capsys, images, tmp_path):
    prompts = _bad(tmp_path, HEAD + "cells_00.tif,point,1,2,,,,,,\n")
    argv = ["batch", images[0].parent, "--out", tmp_path / "o", "--model", "demo_nuclei"]
    for extra, message in (
        (["--prompts", prompts, "--mode", "ais"], "does not go with --mode ais"),
        (["--prompts", prompts, "--all-planes"], "one plane per image"),
        (["--halo", "8"], "needs tile_shape"),
        (["--decoder", prompts], "(--decoder) is for --mode ais"),
        (["--prompts", prompts, "--mode", "concept"], "does not go with --mode concept"),
    ):
        status, _, err = run(capsys, *argv, *extra)
        assert status == 2 and message in err, err
    assert not (tmp_path / "o").exists()


def test_an_input_without_prompts_is_a_failed_row(capsys, images, tmp_path):
    prompts = _bad(tmp_path, HEAD + "cells_00.tif,box,,,,5,5,30,30,\n")
    out = tmp_path / "out"
    status, stdout, _ = run(capsys, "batch", images[0].parent, "--out", out, "--model",
                            "demo_nuclei", "--prompts", prompts)  # fmt: skip
    assert status == 1 and "1 done, 0 skipped, 1 failed" in stdout
    rows = {Path(r["input"]).name: r for r in read_summary(out / "summary.csv")}
    assert rows["cells_01.tif"]["message"] == f"no prompts for this image in {prompts}"
    # changed prompts for an image: its output is not taken for the new one
    prompts.write_text(HEAD + "cells_00.tif,box,,,,6,5,30,30,\n")
    status, _, _ = run(capsys, "batch", images[0], "--out", out, "--model", "demo_nuclei",
                       "--prompts", prompts)  # fmt: skip
    (row,) = read_summary(out / "summary.csv")
    assert status == 1 and "made with other settings (prompts)" in row["message"]


def test_prompts_file_reader_groups_and_names_images(tmp_path):
    folder = tmp_path / "a"
    images = write_cell_images(folder, 2)
    other = write_cell_images(tmp_path / "b", 1)[0]  # b/cells_00.tif: the same file name
    path = tmp_path / "p.csv"
    path.write_text(HEAD + "a/cells_00.tif,point,1,2,,,,,,x\n"
                    "a/cells_00.tif,box,,,,9,9,3,3,x\n"  # corners in any order
                    "cells_01.tif,point,4,5,,,,,,\n"
                    "cells_01.tif,point,6,7,,,,,,\n")  # fmt: skip
    found = read_prompts_file(path, [*images, other])
    assert found == {
        str(images[0]): [{"points": [[1.0, 2.0, 1]], "box": [3.0, 3.0, 9.0, 9.0]}],
        str(images[1]): [{"points": [[4.0, 5.0, 1]], "box": None},
                         {"points": [[6.0, 7.0, 1]], "box": None}],
    }  # fmt: skip
    path.write_text(HEAD + "cells_00.tif,point,1,2,,,,,,\n")
    with pytest.raises(ValueError, match="2 inputs are called cells_00.tif"):
        read_prompts_file(path, [*images, other])


def test_a_killed_runs_plane_parts_are_removed_by_the_next_run(images, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    parts = partial_directory(out / "cells_00-labels.tif")  # as a killed distributed run left
    (parts / "planes-000000.npy").write_bytes(b"half")
    summary = segment_batch([images[0]], out, model="demo_nuclei", points_per_side=2)
    assert summary.ok
    assert [p.name for p in out.iterdir()] == ["cells_00-labels.tif", "summary.csv"]
