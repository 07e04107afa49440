"""``napari-sam-keras embed`` and the --embeddings/--tile-shape/--halo options of predict/auto."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from helpers import run_cli as run

from napari_sam_keras.model.image_encoder import ImageEncoder


@pytest.fixture
def encoder_calls(monkeypatch) -> list[int]:
    """Count image-encoder runs of every network the CLI loads (the real encoder runs)."""
    real = ImageEncoder.embed
    calls = [0]

    def embed(self, rgb):
        calls[0] += 1
        return real(self, rgb)

    monkeypatch.setattr(ImageEncoder, "embed", embed)
    return calls


@pytest.fixture
def stack_tif(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.integers(100, 400, (4, 96, 120)).astype(np.uint16)
    yy, xx = np.mgrid[:96, :120]
    for z in range(4):
        stack[z][(yy - 40) ** 2 + (xx - 50) ** 2 < 150] = 3000 + 100 * z
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    return path


def test_embed_a_stack_then_predict_and_auto_run_no_encoder(
    capsys, tiny_checkpoint, stack_tif, tmp_path, encoder_calls
):
    store = tmp_path / "stack.zarr"
    tiling = ["--tile-shape", "64,64", "--halo", "8"]
    embed = ["embed", stack_tif, "--all-planes", *tiling, "--out", store]
    status, out, err = run(capsys, *embed, "--model", tiny_checkpoint)
    assert status == 0, err
    assert "16 embedding(s) computed, 0 already stored" in out
    assert "embeddings: 16/16" in err  # the progress (a bar on a terminal, lines in a log)
    assert encoder_calls[0] == 16

    encoder_calls[0] = 0
    status, out, err = run(capsys, *embed, "--model", tiny_checkpoint)
    assert status == 0 and "0 embedding(s) computed, 16 already stored" in out
    assert encoder_calls[0] == 0

    stored, fresh = tmp_path / "stored.tif", tmp_path / "fresh.tif"
    prompt = ["--plane", "2", "--point", "50,40", "--model", tiny_checkpoint]
    status, _, err = run(
        capsys, "predict", stack_tif, *prompt, "--embeddings", store, "--out", stored
    )
    assert status == 0, err
    assert encoder_calls[0] == 0 and "1 embedding(s) read from" in err
    status, _, err = run(capsys, "predict", stack_tif, *prompt, *tiling, "--out", fresh)
    assert status == 0 and encoder_calls[0] == 1
    labels = tifffile.imread(stored)
    assert labels.shape == (96, 120)
    np.testing.assert_array_equal(labels, tifffile.imread(fresh))

    encoder_calls[0] = 0
    status, out, err = run(
        capsys,
        "auto",
        stack_tif,
        "--plane",
        "1",
        "--points-per-side",
        "4",
        "--embeddings",
        store,
        "--out",
        tmp_path / "auto.tif",
        "--model",
        tiny_checkpoint,
    )
    assert status == 0, err
    assert encoder_calls[0] == 0 and tifffile.imread(tmp_path / "auto.tif").shape == (96, 120)


def test_embed_one_plane_and_a_store_for_other_data(capsys, tiny_checkpoint, stack_tif, tmp_path):
    store = tmp_path / "plane1.zarr"
    status, out, err = run(
        capsys, "embed", stack_tif, "--plane", "1", "--out", store, "--model", tiny_checkpoint
    )
    assert status == 0 and "1 embedding(s) computed" in out, err
    status, _, err = run(
        capsys,
        "predict",
        stack_tif,
        "--plane",
        "2",
        "--point",
        "50,40",
        "--embeddings",
        store,
        "--out",
        tmp_path / "x.tif",
        "--model",
        tiny_checkpoint,
    )
    assert status == 2 and "made for other data" in err
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "choose a plane with --z (0..3) or embed every plane with --all-planes"),
        (["--plane", "7"], "--z 7 is outside 0..3"),
        (["--all-planes", "--halo", "8"], "--halo needs --tile-shape"),
        (["--all-planes", "--tile-shape", "0,64"], "--tile-shape must be at least 1,1"),
    ],
)
def test_embed_usage_errors(capsys, stack_tif, tmp_path, args, message):
    status, _, err = run(capsys, "embed", stack_tif, *args, "--out", tmp_path / "s.zarr")
    assert status == 2 and message in err
    assert not (tmp_path / "s.zarr").exists()


def test_embed_never_writes_over_a_file_or_a_foreign_folder(capsys, stack_tif, tmp_path):
    before = stack_tif.read_bytes()
    status, _, err = run(capsys, "embed", stack_tif, "--all-planes", "--out", stack_tif)
    assert status == 2 and "is a file, not an embedding store" in err
    assert stack_tif.read_bytes() == before
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    status, _, err = run(capsys, "embed", stack_tif, "--all-planes", "--out", tmp_path / "photos")
    assert status == 2 and "not an embedding store" in err
    grey = tmp_path / "grey.tif"
    tifffile.imwrite(grey, np.zeros((20, 30), np.uint8))
    status, _, err = run(capsys, "embed", grey, "--plane", "0", "--out", tmp_path / "g.zarr")
    assert status == 2 and "single 2D image" in err
    status, _, err = run(capsys, "embed", grey, "--tile-shape", "a,b", "--out", tmp_path / "g")
    assert status == 2 and "bad size 'a,b'" in err


def test_predict_on_tiles_writes_full_size_labels(capsys, tiny_checkpoint, tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (300, 420)).astype(np.uint8)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, image)
    status, out, err = run(
        capsys,
        "predict",
        path,
        "--point",
        "350,250",
        "--tile-shape",
        "128",
        "--halo",
        "32",
        "--out",
        tmp_path / "labels.tif",
        "--model",
        tiny_checkpoint,
    )
    assert status == 0, err
    assert "12 tiles" in err and "object 1:" in out
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == (300, 420)
    # the mask comes from the tile holding the point: rows 128..256 and columns 256..384,
    # grown by the halo to rows 96..288 and columns 224..416
    outside = np.ones(labels.shape, bool)
    outside[96:288, 224:416] = False
    assert not labels[outside].any()


def test_embed_writes_and_imports_micro_sams_layout(
    capsys, tiny_checkpoint, stack_tif, tmp_path, encoder_calls
):
    """--format micro-sam writes micro-sam's zarr; --from-micro-sam imports it without
    running the encoder; a folder that is not micro-sam's is refused before the model loads."""
    import hashlib

    import zarr

    from napari_sam_keras import EmbeddingStore

    image = tifffile.imread(stack_tif)[1]
    image_tif = tmp_path / "plane.tif"
    tifffile.imwrite(image_tif, image)
    theirs, ours = tmp_path / "micro.zarr", tmp_path / "ours.zarr"
    argv = ["embed", image_tif, "--model", tiny_checkpoint]
    status, out, err = run(capsys, *argv, "--format", "micro-sam", "--out", theirs)
    assert status == 0, err
    group = zarr.open_group(str(theirs), mode="r")
    assert group.attrs["data_signature"] == hashlib.sha1(image.tobytes()).hexdigest()
    assert group["features"].shape[:2] == (1, 32)  # channels first

    encoder_calls[0] = 0
    status, out, err = run(capsys, *argv, "--from-micro-sam", theirs, "--out", ours)
    assert status == 0, err
    assert encoder_calls[0] == 0
    emb = EmbeddingStore(ours, read_only=True).read(0, 0)
    np.testing.assert_array_equal(emb.features.transpose(0, 3, 1, 2), group["features"][...])

    status, _, err = run(capsys, *argv, "--from-micro-sam", ours, "--out", tmp_path / "x.zarr")
    assert status != 0 and "not a micro-sam embedding store" in err
    assert encoder_calls[0] == 0 and not (tmp_path / "x.zarr").exists()
