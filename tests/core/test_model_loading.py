"""Every kind of model source, on files the tests create."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import TINY

from napari_sam_keras import ModelLoadError, SAMPredictor, load_model
from napari_sam_keras.errors import SAMError
from napari_sam_keras.model import torch_checkpoints
from napari_sam_keras.model.keras_files import save_preset
from napari_sam_keras.model.model_source import DEMO_MODELS


def same_weights(a, b) -> bool:
    wa, wb = a.model.weights, b.model.weights
    return len(wa) == len(wb) and all(
        np.array_equal(np.asarray(x.numpy()), np.asarray(y.numpy()))
        for x, y in zip(wa, wb, strict=True)
    )


def test_official_checkpoint_reads_its_architecture(tiny_network):
    assert tiny_network.config == TINY
    assert tiny_network.key.startswith("sha256:")


def test_wrapped_and_prefixed_state_dict(tiny_official, tmp_path, tiny_network):
    sam, _ = tiny_official
    path = tmp_path / "finetuned.pt"
    sd = {f"module.{k}": v for k, v in sam.state_dict().items()}
    torch.save({"model": sd, "epoch": 3}, path)
    net = load_model(path)
    assert net.config == TINY
    assert same_weights(net, tiny_network)


def test_second_load_uses_cache_without_torch(tiny_checkpoint, tiny_network, monkeypatch):
    def no_torch(path):
        raise AssertionError("the converted cache should have been used")

    monkeypatch.setattr(
        torch_checkpoints, "read_torch_file", no_torch
    )  # what every conversion reads with
    again = load_model(tiny_checkpoint)
    assert again.key == tiny_network.key
    assert same_weights(again, tiny_network)


def test_cache_lives_in_the_cache_dir(tiny_network, _isolated_cache):
    converted = list((_isolated_cache / "converted").glob("*.weights.h5"))
    assert converted, "conversion should have written Keras weights to the cache"


def test_keras_file_roundtrip(tiny_network, tmp_path):
    path = tmp_path / "sam.keras"
    tiny_network.model.save(path)
    net = load_model(path)
    assert net.config == TINY and same_weights(net, tiny_network)


def test_weights_file_with_config(tiny_network, tmp_path):
    path = tmp_path / "tiny.weights.h5"
    tiny_network.model.save_weights(path)
    with pytest.raises(ModelLoadError, match="architecture"):
        load_model(path)
    net = load_model(path, config=TINY)
    assert same_weights(net, tiny_network)
    (tmp_path / "tiny.json").write_text(TINY.to_json())
    assert same_weights(load_model(path), tiny_network)


def test_preset_directory(tiny_network, tmp_path):
    directory = save_preset(tiny_network, tmp_path / "my_sam")
    net = load_model(directory)
    assert net.config == TINY and same_weights(net, tiny_network)


def test_preset_name_from_kagglehub_cache(tiny_network, tmp_path, monkeypatch):
    """A preset name resolves through keras-cv and kagglehub's own cache, offline."""
    from kagglehub.cache import Cache, get_cached_path
    from kagglehub.handle import parse_model_handle

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    handle = parse_model_handle("keras/sam/keras/sam_base_sa1b/2")
    preset_dir = tmp_path / "preset"
    save_preset(tiny_network, preset_dir)
    for name in ("config.json", "model.weights.h5", "metadata.json"):
        target = get_cached_path(handle, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(preset_dir / name, target)
        Cache().mark_as_complete(handle, name)
    net = load_model("sam_base_sa1b")
    assert net.name == "sam_base_sa1b" and same_weights(net, tiny_network)


def test_preset_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "empty"))
    import kagglehub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(kagglehub, "model_download", offline)
    with pytest.raises(ModelLoadError, match="Could not download.*local file"):
        load_model("sam_large_sa1b")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a checkpoint at all", "damaged or not a checkpoint"),
        (None, "not an official SAM checkpoint"),
    ],
    ids=["corrupt", "other_model"],
)
def test_bad_checkpoints(tmp_path, content, match):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save({"linear.weight": torch.zeros(3, 3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        load_model(path)


def test_truncated_checkpoint(tiny_official, tmp_path):
    sam, _ = tiny_official
    sd = dict(sam.state_dict())
    sd.pop("mask_decoder.iou_token.weight")
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(ModelLoadError):
        load_model(path)


def test_unknown_sources(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model("sam_gigantic")
    other = tmp_path / "weights.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="Don't know how to load"):
        load_model(other)
    bad_keras = tmp_path / "broken.keras"
    bad_keras.write_text("nope")
    with pytest.raises(ModelLoadError, match="not a valid .keras"):
        load_model(bad_keras)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path / "emptydir")
    bad_cfg = tmp_path / "x.weights.h5"
    bad_cfg.write_bytes(b"x")
    (tmp_path / "x.json").write_text(json.dumps({"image_size": "big", "nonsense": 1}))
    with pytest.raises(ModelLoadError):
        load_model(bad_cfg)


def test_loaded_model_predicts(tiny_network):
    predictor = SAMPredictor(tiny_network)
    predictor.set_image(np.zeros((64, 80, 3), np.uint8))
    masks, scores, low = predictor.predict(point_coords=[[40, 30]], point_labels=[1])
    assert masks.shape == (3, 64, 80) and scores.shape == (3,) and low.shape == (3, 64, 64)


def test_wrong_backend_after_keras_import_is_explained():
    code = (
        "import os; os.environ['KERAS_BACKEND']='tensorflow'; import keras\n"
        "from napari_sam_keras.runtime.backend import ensure_backend, BackendError\n"
        "try:\n    ensure_backend('jax')\nexcept BackendError as e:\n    print('MSG', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "MSG Keras was already imported with the 'tensorflow' backend" in out.stdout
    assert "KERAS_BACKEND=jax" in out.stdout


def test_unknown_backend_is_explained(monkeypatch):
    from napari_sam_keras.runtime.backend import BackendError, requested_backend

    monkeypatch.setenv("NAPARI_SAM_KERAS_BACKEND", "mxnet")
    with pytest.raises(BackendError, match="choose one of tensorflow, jax, torch"):
        requested_backend()


@pytest.mark.parametrize("arch", ["vit_b", "vit_l", "vit_h"])
def test_official_architectures_are_recognised(arch):
    """The real checkpoints' shapes (built on torch's meta device: no memory) give their config."""
    from official_sam import install_torchvision_shim

    install_torchvision_shim()
    from segment_anything import sam_model_registry

    from napari_sam_keras.model.checkpoint_conversion import config_from_state_dict
    from napari_sam_keras.model.config import ARCHITECTURES

    with torch.device("meta"):
        state_dict = sam_model_registry[arch]().state_dict()
    assert config_from_state_dict(state_dict) == ARCHITECTURES[arch]


def test_bfloat16_option(tiny_checkpoint, tiny_network):
    """mixed_bfloat16 is opt-in, runs end to end and returns float32 arrays close to float32's."""
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    half = load_model(tiny_checkpoint, dtype_policy="mixed_bfloat16")
    assert half.model.dtype_policy.name == "mixed_bfloat16"
    assert tiny_network.model.dtype_policy.name == "float32"
    results = []
    for net in (tiny_network, half):
        p = SAMPredictor(net)
        p.set_image(image)
        results.append(p.predict(box=[20, 20, 120, 100], multimask_output=False))
    (m32, s32, l32), (m16, s16, l16) = results
    assert l16.dtype == np.float32 and s16.dtype == np.float32 and m16.dtype == bool
    assert np.abs(l16 - l32).mean() < 0.1 * np.abs(l32).mean()
    with pytest.raises(SAMError, match="dtype policy"):
        load_model(tiny_checkpoint, dtype_policy="float7")


def test_the_demo_model_is_shipped_small_and_found_by_name(tmp_path, monkeypatch):
    folder = DEMO_MODELS["demo_nuclei"]
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 4 * 1024**2  # a few MB at most: it lives in the package
    network = load_model("demo_nuclei")
    assert network.name == "demo_nuclei" and network.config.image_size == 256
    # a file or folder of that name in the working directory wins over the shipped model
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo_nuclei").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model("demo_nuclei")
