"""MobileSAM's TinyViT encoder (vit_t) against MobileSAM's own code, same random weights.

One MobileSAM (1024 px: its encoder cannot be shrunk) is saved as ``mobile_sam.pt``
and loaded through :func:`load_model`.  The ``parity`` tests also run on the other
installed Keras backends, each in its own process (``tests/other_backends.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mobile_sam_oracle import import_mobile_sam, save_mobile_sam_checkpoint

from napari_sam_keras import ModelLoadError, SAMAutomaticMaskGenerator, SAMPredictor, load_model
from napari_sam_keras.errors import SAMError
from napari_sam_keras.keras_layers.tiny_vit import (
    depthwise_conv_taps,
    relative_position_index,
)
from napari_sam_keras.model import torch_checkpoints
from napari_sam_keras.model.checkpoint_conversion import assign_state_dict, config_from_state_dict
from napari_sam_keras.model.config import VIT_T, SAMConfig
from napari_sam_keras.model.keras_files import save_preset
from napari_sam_keras.model.network import SAMNetwork, build_keras_cv_sam, build_sam
from napari_sam_keras.model.torch_checkpoints import read_torch_checkpoint

mobile_sam = import_mobile_sam()

EMBEDDING_TOL = 1e-4  # relative L2
LOW_RES_TOL = 1e-3
IOU_TOL = 1e-4


def blob_image(h: int = 300, w: int = 410, seed: int = 0) -> np.ndarray:
    """A non-square RGB image with blobs on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = rng.normal(40, 10, (h, w))
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(10, 40)
        img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    rgb = np.stack([img, img * 0.8, img * 0.6], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


IMAGE = blob_image()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(MobileSAM torch model, path of its mobile_sam.pt-style checkpoint)."""
    path = tmp_path_factory.mktemp("mobile_sam") / "mobile_sam.pt"
    return save_mobile_sam_checkpoint(path, seed=3), path


@pytest.fixture(scope="module")
def network(checkpoint):
    return load_model(checkpoint[1])


@pytest.fixture(scope="module")
def pair(checkpoint, network):
    """(our predictor, MobileSAM's SamPredictor), both with IMAGE set."""
    ours = SAMPredictor(network)
    theirs = mobile_sam.SamPredictor(checkpoint[0])
    ours.set_image(IMAGE)
    with torch.no_grad():
        theirs.set_image(IMAGE)
    return ours, theirs


def same_weights(a, b) -> bool:
    wa, wb = a.model.weights, b.model.weights
    return len(wa) == len(wb) and all(
        np.array_equal(np.asarray(x.numpy()), np.asarray(y.numpy()))
        for x, y in zip(wa, wb, strict=True)
    )


# --- parity ---------------------------------------------------------------------------------


@pytest.mark.other_backends
def test_parity_embedding(pair):
    ours, theirs = pair
    a = ours.get_image_embedding()
    b = theirs.get_image_embedding().numpy()
    assert a.shape == b.shape == (1, 256, 64, 64)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < EMBEDDING_TOL


PROMPTS = {
    "one_point": dict(point_coords=np.array([[120.0, 140.0]]), point_labels=np.array([1])),
    "points": dict(
        point_coords=np.array([[120.0, 140.0], [330.0, 60.0], [200, 250]]),
        point_labels=np.array([1, 0, 1]),
    ),
    "box": dict(box=np.array([40.0, 50.0, 310.0, 260.0])),
    "box_points": dict(
        box=np.array([40.0, 50.0, 310.0, 260.0]),
        point_coords=np.array([[120.0, 140.0], [300, 70]]),
        point_labels=np.array([1, 0]),
    ),
}


@pytest.mark.other_backends
@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("kind", list(PROMPTS))
def test_parity_prompts(pair, kind, multimask):
    ours, theirs = pair
    masks, iou, low = ours.predict(multimask_output=multimask, **PROMPTS[kind])
    with torch.no_grad():
        t_masks, t_iou, t_low = theirs.predict(multimask_output=multimask, **PROMPTS[kind])
        t_logits = theirs.predict(multimask_output=multimask, return_logits=True, **PROMPTS[kind])[
            0
        ]
    assert masks.shape == t_masks.shape and low.shape == t_low.shape and iou.shape == t_iou.shape
    np.testing.assert_allclose(low, t_low, atol=LOW_RES_TOL, rtol=0)
    np.testing.assert_allclose(iou, t_iou, atol=IOU_TOL, rtol=0)
    differ = masks != t_masks
    assert np.all(np.abs(t_logits[differ]) < 1e-3), "masks differ away from the threshold"


def test_automatic_generator_matches_mobile_sam(pair, checkpoint):
    # A random network: low IoU cutoff, a small stability offset so that the scores are
    # not all zero, no box NMS (a random network's masks span most of the image).
    options = dict(
        points_per_side=4,
        pred_iou_thresh=0.3,
        stability_score_thresh=0.0,
        stability_score_offset=0.05,
        box_nms_thresh=1.0,
        output_mode="binary_mask",
    )
    ours = SAMAutomaticMaskGenerator(pair[0], **options).generate(IMAGE)
    with torch.no_grad():
        theirs = mobile_sam.SamAutomaticMaskGenerator(checkpoint[0], **options).generate(IMAGE)
    assert len(theirs) >= 3 and len(ours) == len(theirs)
    for t in theirs:  # the record of ours from the same point with the closest score
        same_point = [
            o for o in ours if np.allclose(o["point_coords"], t["point_coords"], atol=1e-6)
        ]
        o = min(same_point, key=lambda o: abs(o["predicted_iou"] - t["predicted_iou"]))
        assert abs(o["predicted_iou"] - t["predicted_iou"]) < IOU_TOL
        a, b = np.asarray(o["segmentation"], bool), np.asarray(t["segmentation"], bool)
        assert (a & b).sum() / max(1, (a | b).sum()) > 0.99


# --- the encoder's pieces -------------------------------------------------------------------


def test_bias_index_matches_mobile_sam():
    for window in (7, 14):
        attn = mobile_sam.modeling.tiny_vit_sam.Attention(
            32, 16, num_heads=2, attn_ratio=1, resolution=(window, window)
        )
        np.testing.assert_array_equal(
            relative_position_index(window), attn.attention_bias_idxs.numpy()
        )


@pytest.mark.parametrize("strides", [1, 2])
def test_depthwise_taps_equal_keras_depthwise_conv(strides):
    """The shifted-slice depthwise convolution the XLA backends run is Keras' own."""
    import keras

    rng = np.random.default_rng(strides)
    x = rng.standard_normal((2, 11, 12, 5)).astype(np.float32)
    conv = keras.layers.DepthwiseConv2D(3, strides, use_bias=False)
    conv.build(x.shape)
    conv.kernel.assign(rng.standard_normal((3, 3, 5, 1)).astype(np.float32))
    want = keras.ops.convert_to_numpy(conv(x))
    got = keras.ops.convert_to_numpy(depthwise_conv_taps(x, conv.kernel, strides))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_build_sam_vit_t(network):
    net = build_sam("vit_t", seed=0)
    assert net.config == VIT_T and net.config.encoder == "tiny_vit"
    assert tuple(net.image_encoder_model().output.shape) == (None, 64, 64, 256)
    assert [w.shape for w in net.model.weights] == [w.shape for w in network.model.weights]
    assert not same_weights(net, network)
    # a bare keras-cv model with a TinyViT backbone is recognised too
    assert SAMNetwork.from_keras_cv(net.model).config == VIT_T


def test_config_checks_tiny_vit_fields():
    with pytest.raises(SAMError, match="four stages"):
        SAMConfig(encoder="tiny_vit", tiny_vit_depths=(2, 2, 6))
    with pytest.raises(SAMError, match="divisible"):
        SAMConfig(encoder="tiny_vit", tiny_vit_num_heads=(2, 4, 3, 10))
    with pytest.raises(SAMError, match="Unknown encoder"):
        SAMConfig(encoder="vit_t")
    assert SAMConfig.from_dict(VIT_T.to_dict()) == VIT_T


# --- loading --------------------------------------------------------------------------------


def test_mobile_sam_checkpoint_reads_its_architecture(network, checkpoint):
    assert network.config == VIT_T
    assert network.key.startswith("sha256:")
    sd = read_torch_checkpoint(checkpoint[1])
    # the classification head is in the file and is ignored
    assert "image_encoder.head.weight" in sd and "image_encoder.norm_head.weight" in sd


def test_micro_sam_layout(checkpoint, network, tmp_path):
    path = tmp_path / "vit_t_lm.pt"
    sd = {f"sam.{k}": v for k, v in checkpoint[0].state_dict().items()}
    torch.save({"model_state": sd, "epoch": 10, "best_metric": 0.1}, path)
    net = load_model(path)
    assert net.config == VIT_T
    assert same_weights(net, network)


def test_second_load_uses_cache(checkpoint, network, monkeypatch):
    def no_torch(path):
        raise AssertionError("the converted cache should have been used")

    monkeypatch.setattr(torch_checkpoints, "read_torch_file", no_torch)
    again = load_model(checkpoint[1])
    assert again.key == network.key and again.config == VIT_T
    assert same_weights(again, network)


def test_damaged_files_are_clear_errors(checkpoint, tmp_path):
    data = checkpoint[1].read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="damaged or not a checkpoint"):
        load_model(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match="damaged or not a checkpoint"):
        load_model(garbage)
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(ModelLoadError, match="not an official SAM checkpoint"):
        load_model(other)


def test_missing_tensor_is_named(checkpoint, tmp_path):
    state = checkpoint[0].state_dict()
    del state["image_encoder.layers.2.blocks.3.attn.attention_biases"]
    path = tmp_path / "incomplete.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"layers\.2\.blocks\.3\.attn\.attention_biases"):
        load_model(path)
    sd = read_torch_checkpoint(checkpoint[1])
    del sd["image_encoder.layers.1.blocks.0.attn.attention_biases"]
    with pytest.raises(ModelLoadError, match=r"layers\.1\.blocks\.0\.attn\.attention_biases"):
        config_from_state_dict(sd)


def test_misshapen_tensor_is_named(checkpoint):
    sd = read_torch_checkpoint(checkpoint[1])
    name = "image_encoder.layers.1.downsample.conv2.c.weight"
    sd[name] = sd[name][:, :, :2]
    with pytest.raises(ModelLoadError, match=rf"{name}.*shape"):
        assign_state_dict(build_keras_cv_sam(VIT_T), sd)


def test_keras_formats_roundtrip(network, tmp_path):
    """Preset directories, .keras files and .weights.h5 + config also hold a vit_t."""
    preset = load_model(save_preset(network, tmp_path / "preset"))
    assert preset.config == VIT_T and same_weights(preset, network)
    network.model.save(tmp_path / "vit_t.keras")
    keras_file = load_model(tmp_path / "vit_t.keras")
    assert keras_file.config == VIT_T and same_weights(keras_file, network)
    weights = tmp_path / "vit_t.weights.h5"
    network.model.save_weights(weights)
    (tmp_path / "vit_t.json").write_text(VIT_T.to_json())
    assert same_weights(load_model(weights), network)
