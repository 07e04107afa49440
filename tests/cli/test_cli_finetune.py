"""``napari-sam-keras finetune`` and ``evaluate``: pairing files by name, errors before any
work, and a short real run on the demo model (before/after figures, a model folder that
``evaluate`` and ``--model`` read)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam_keras import cli
from napari_sam_keras.errors import SAMError
from napari_sam_keras.files.training_pairs import pair_files


def run(capsys, *argv):
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _blobs(seed: int, shape=(96, 96)):
    """A dim image with a few bright discs, and their instance labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(300, 30, shape)
    labels = np.zeros(shape, np.uint16)
    for i in range(4):
        cy, cx = rng.integers(16, shape[0] - 16), rng.integers(16, shape[1] - 16)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(40, 90)
        image[disc] += 2500
        labels[disc & (labels == 0)] = i + 1
    return image.astype(np.uint16), labels


def _write_pairs(folder, names, label_name=lambda n: f"{n}-labels.tif"):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        image, labels = _blobs(i)
        tifffile.imwrite(folder / "images" / f"{name}.tif", image)
        tifffile.imwrite(folder / "labels" / label_name(name), labels)
    return folder / "images", folder / "labels"


def test_pairing_by_name_accepts_the_usual_label_endings(tmp_path):
    for name in ("a.tif", "b.tif", "c.ome.tif", "d_mask.tif", "x.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((8, 8), np.uint8))
    labels = tmp_path / "lab"
    labels.mkdir()
    for name in ("a-labels.tif", "b_labels.png", "c.tif", "d_mask.tif", "x_seg.npy"):
        (labels / name).write_bytes(b"")
    pairs = pair_files([tmp_path], [labels])
    assert [(i.name, lab.name) for i, lab in pairs] == [
        ("a.tif", "a-labels.tif"),
        ("b.tif", "b_labels.png"),
        ("c.ome.tif", "c.tif"),
        ("d_mask.tif", "d_mask.tif"),  # the same name wins over stripping "_mask"
        ("x.tif", "x_seg.npy"),
    ]


def test_one_folder_for_both_holds_images_and_labels(tmp_path):
    for name in ("a.tif", "a-labels.tif", "b.tif", "b-labels.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((8, 8), np.uint8))
    pairs = pair_files([tmp_path], [str(tmp_path / "*-labels.tif")])
    assert [(i.name, lab.name) for i, lab in pairs] == [
        ("a.tif", "a-labels.tif"),
        ("b.tif", "b-labels.tif"),
    ]


def test_every_unpaired_and_ambiguous_file_is_named(tmp_path):
    images, labels = _write_pairs(tmp_path, ["one", "two", "three"])
    (labels / "two-labels.tif").unlink()
    tifffile.imwrite(labels / "four_labels.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(SAMError) as info:
        pair_files([images], [labels])
    message = str(info.value)
    assert "images without a label file" in message and "two.tif" in message
    assert "label files without an image" in message and "four_labels.tif" in message
    assert "one.tif" not in message
    tifffile.imwrite(labels / "one_mask.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(SAMError, match="same name.*one-labels.tif.*one_mask.tif"):
        pair_files([images], [labels])


def test_unpaired_files_stop_finetune_before_the_model_loads(tmp_path, capsys):
    images, labels = _write_pairs(tmp_path, ["one", "two"])
    (labels / "two-labels.tif").unlink()
    # a model that does not exist: the pairing error must come first
    status, _, err = run(
        capsys, "finetune", "--images", images, "--labels", labels, "--out", tmp_path / "m",
        "--model", tmp_path / "no-such-model",
    )  # fmt: skip
    assert status == 2 and "two.tif" in err and "no-such-model" not in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("extra", "prepare", "contains"),
    [
        (["--epochs", "0"], None, "--epochs must be at least 1"),
        (["--validation", "1.5"], None, "--validation must be in [0, 1)"),
        ([], lambda out: out.mkdir(), "exists: choose a new folder"),
        (["--resume"], None, "nothing to resume"),
        ([], lambda out: out.with_name("m.checkpoints").mkdir(), "add --resume"),
    ],
)
def test_bad_finetune_options_are_one_error_line(tmp_path, capsys, extra, prepare, contains):
    images, labels = _write_pairs(tmp_path, ["one", "two"])
    out = tmp_path / "m"
    if prepare is not None:
        prepare(out)
    status, _, err = run(
        capsys, "finetune", "--images", images, "--labels", labels, "--out", out,
        "--model", tmp_path / "no-such-model", *extra,
    )  # fmt: skip
    assert status == 2, err
    assert err.strip().splitlines()[-1].startswith("error: ") and contains in err, err
    assert "Traceback" not in err


def test_float_labels_are_refused_with_the_file_name(tmp_path, capsys):
    images, labels = _write_pairs(tmp_path, ["one"])
    tifffile.imwrite(labels / "one-labels.tif", np.zeros((96, 96), np.float32))
    status, _, err = run(
        capsys, "evaluate", "--images", images, "--labels", labels, "--model", "demo_nuclei"
    )
    assert status == 2 and "one-labels.tif" in err and "float32" in err, err


def test_finetune_then_evaluate_the_new_model(tmp_path, capsys):
    """A short real run on the demo model: epoch lines, the before/after table, a model
    folder that ``evaluate --model`` reads (prompt IoUs and the instance decoder's mSA)."""
    images, labels = _write_pairs(tmp_path, ["a", "b", "c", "d"])
    out = tmp_path / "my-model"
    status, printed, err = run(
        capsys, "finetune", "--images", images, "--labels", labels, "--out", out,
        "--model", "demo_nuclei", "--epochs", "2", "--validation", "0.25",
    )  # fmt: skip
    assert status == 0, err
    assert "epoch 1:" in err and "epoch 2:" in err, err
    table = printed.split("held-out images:")[1]
    header, *rows = [line.split() for line in table.strip().splitlines() if line.strip()][:-1]
    assert header == ["before", "after", "gain"]
    figures = {" ".join(r[:-3]): [float(v) for v in r[-3:]] for r in rows}
    assert {"IoU, 1 click", "IoU, box", "mSA"} <= set(figures)
    for before, after, gain in figures.values():
        assert 0 <= before <= 1 and 0 <= after <= 1 and abs(after - before - gain) < 2e-3
    assert out.is_dir() and not out.with_name("my-model.checkpoints").exists()
    status, printed, err = run(
        capsys, "evaluate", "--model", out, "--images", images, "--labels", labels
    )
    assert status == 0, err
    values = dict(line.rsplit(None, 1) for line in printed.splitlines()[2:])
    assert {"IoU, 1 click", "IoU, box", "mSA", "SA50", "SA75", "F1"} <= set(values), printed
