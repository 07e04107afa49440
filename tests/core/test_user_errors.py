"""Mistakes a user can make end in one clear SAMError subclass, never a raw exception."""

from __future__ import annotations

import json
import logging
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from napari_sam_keras import (
    EmbeddingCache,
    EmbeddingError,
    ImageEmbedding,
    ImageError,
    ModelLoadError,
    SAMError,
    SAMPredictor,
    load_model,
)
from napari_sam_keras.files.image_files import read_image
from napari_sam_keras.processing.images import to_rgb_uint8

# --------------------------------------------------------------------- model files


@pytest.mark.parametrize(
    "missing",
    [
        "image_encoder.blocks.0.attn.rel_pos_h",  # read for the architecture
        "image_encoder.blocks.0.mlp.lin1.weight",
        "prompt_encoder.mask_downscaling.3.weight",
        "mask_decoder.transformer.layers.0.mlp.lin1.weight",
        "mask_decoder.mask_tokens.weight",
        "mask_decoder.iou_prediction_head.layers.0.weight",
        "mask_decoder.output_upscaling.0.bias",  # only needed when copying
    ],
)
def test_checkpoint_missing_a_tensor(tiny_official, tmp_path, missing):
    sam, _ = tiny_official
    state = {k: v for k, v in sam.state_dict().items() if k != missing}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=missing.replace(".", r"\.")):
        load_model(path)


def test_checkpoint_without_decoder_layers(tiny_official, tmp_path):
    sam, _ = tiny_official
    state = {k: v for k, v in sam.state_dict().items() if ".transformer.layers." not in k}
    path = tmp_path / "no-layers.pth"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match="Not a complete SAM checkpoint"):
        load_model(path)


def _keras_zip(path, config: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", b"\x89HDF\r\n")
        archive.writestr("metadata.json", b"{}")
    return path


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "bad config.json"),
        (json.dumps({"class_name": "Sequential"}).encode(), "not a SAM model"),
        (
            json.dumps({"class_name": "SegmentAnythingModel", "config": {}}).encode(),
            "does not describe a keras-cv SegmentAnythingModel",
        ),
    ],
)
def test_keras_file_with_a_bad_config(tmp_path, config, match):
    with pytest.raises(ModelLoadError, match=match):
        load_model(_keras_zip(tmp_path / "bad.keras", config))


def test_damaged_keras_file(tmp_path, tiny_network):
    path = tmp_path / "sam.keras"
    tiny_network.model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a valid .keras file"):
        load_model(path)


@pytest.mark.parametrize("source", ["", "  "])
def test_empty_model_source(source):
    with pytest.raises(ModelLoadError, match="No model given"):
        load_model(source)


# --------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def predictor(tiny_network):
    return SAMPredictor(tiny_network, warm_up=False)


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (2, 3000, 3)])
def test_image_side_that_rounds_to_zero(predictor, shape):
    with pytest.raises(ImageError, match="would be 0 pixels"):
        predictor.set_image(np.ones(shape, np.uint16))


@pytest.mark.parametrize("limits", [(300, 100), (5, 5), (0, float("nan")), ("a", "b")])
def test_bad_contrast_limits(predictor, limits):
    image = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    with pytest.raises(ImageError, match="[Cc]ontrast"):
        predictor.set_image(image, contrast_limits=limits)
    with pytest.raises(ImageError, match="[Cc]ontrast"):
        to_rgb_uint8(image, limits)


def _logs_then_fails_tiff(path):
    tifffile.imwrite(path, np.zeros((48, 64), np.uint16))
    data = bytearray(path.read_bytes())
    data[14:18] = b"\xff\xff\xff\x7f"  # a damaged tag in the first IFD
    path.write_bytes(bytes(data))
    return path


def test_corrupt_tiff_is_one_error_without_log_lines(tmp_path, caplog):
    path = _logs_then_fails_tiff(tmp_path / "bad.tif")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageError, match="cannot read image"):
        read_image(path)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")], caplog.text


def test_readable_tiff_still_reads(tmp_path):
    path = tmp_path / "ok.tif"
    tifffile.imwrite(path, np.ones((8, 9), np.uint8))
    assert read_image(path).shape == (8, 9)


@pytest.mark.parametrize("name", ["text.png", "text.jpg"])
def test_text_file_with_an_image_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert "not a" in message and "image" in message
    assert "pip install" not in message and "pyav" not in message and "\n" not in message


# --------------------------------------------------------------------- embeddings


@pytest.fixture
def embedding():
    return ImageEmbedding(
        features=np.random.default_rng(0).random((1, 16, 16, 32), dtype=np.float32),
        original_size=(40, 50),
        input_size=(205, 256),
        model_key="abc",
    )


def _truncated(path, embedding):
    embedding.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path, embedding):
    path.write_bytes(np.random.default_rng(1).bytes(3000))


def _other_npz(path, embedding):
    np.savez(path, image=np.zeros(3))


def _single_array(path, embedding):
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))


def _zero_size(path, embedding):
    np.savez(
        path,
        features=embedding.features,
        original_size=np.asarray((0, 0)),
        input_size=np.asarray((0, 0)),
        model_key=np.asarray("abc"),
    )


def _flat_features(path, embedding):
    np.savez(
        path,
        features=np.zeros(10, np.float32),
        original_size=np.asarray((4, 5)),
        input_size=np.asarray((4, 5)),
        model_key=np.asarray("abc"),
    )


@pytest.mark.parametrize(
    "damage", [_truncated, _garbage, _other_npz, _single_array, _zero_size, _flat_features]
)
def test_bad_embedding_files(tmp_path, embedding, damage):
    path = tmp_path / "emb.npz"
    damage(path, embedding)
    with pytest.raises(EmbeddingError, match="emb.npz"):
        ImageEmbedding.load(path)


def test_missing_embedding_file(tmp_path):
    with pytest.raises(EmbeddingError, match="not found"):
        ImageEmbedding.load(tmp_path / "none.npz")


def test_embedding_roundtrip_is_atomic(tmp_path, embedding):
    path = embedding.save(tmp_path / "emb")
    assert path.name == "emb.npz"
    back = ImageEmbedding.load(path)
    np.testing.assert_array_equal(back.features, embedding.features)
    assert (back.original_size, back.input_size, back.model_key) == ((40, 50), (205, 256), "abc")
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npz"]


@pytest.mark.parametrize(
    "kwargs", [{"max_items": -1}, {"max_items": 0}, {"max_bytes": -5}, {"max_items": 2.5}]
)
def test_bad_embedding_cache_settings(kwargs):
    with pytest.raises(EmbeddingError, match="positive integer"):
        EmbeddingCache(**kwargs)


def test_every_error_here_is_a_sam_error():
    assert issubclass(EmbeddingError, SAMError) and issubclass(EmbeddingError, ImageError)
