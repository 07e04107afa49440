"""int8 image encoders (issue 25): ``load_model(..., quantize="int8")``, its agreement check,
``--quantize`` on the command line, and what an int8 network refuses to do."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from helpers import run_cli

from napari_sam_keras import ModelLoadError, SAMError, SAMPredictor, load_model, save_model
from napari_sam_keras.model import quantization
from napari_sam_keras.model.encoder_agreement import point_grid
from napari_sam_keras.model.quantization import MIN_AGREEMENT, encoder_kernel_dtypes
from napari_sam_keras.sample_data import sample_image


@pytest.fixture(scope="module")
def demo_float():
    return load_model("demo_nuclei")


@pytest.fixture(scope="module")
def demo_int8():
    return load_model("demo_nuclei", quantize="int8")


@pytest.mark.other_backends(backends=("tensorflow",))
def test_demo_model_int8_kernels_and_agreement(demo_float, demo_int8):
    kernels = encoder_kernel_dtypes(demo_int8)
    # ViT blocks: qkv + projection + 2 MLP layers each, all int8; the float network's float32
    assert len(kernels) == 4 * demo_int8.config.encoder_depth
    assert set(kernels.values()) == {"int8"}
    assert set(encoder_kernel_dtypes(demo_float).values()) == {"float32"}
    # the prompt encoder and mask decoder stay float32
    decoder_kernels = [w for w in demo_int8.model.mask_decoder.weights if "kernel" in w.path]
    assert decoder_kernels and {str(w.dtype) for w in decoder_kernels} == {"float32"}
    assert demo_int8.quantization == "int8" and demo_float.quantization is None
    assert demo_int8.key == demo_float.key + "+int8"  # never mixed with float32 embeddings
    assert demo_int8.agreement.mean_iou >= MIN_AGREEMENT

    # the user's path, on an image the load-time check did not see: the best mask of a grid
    # of clicks agrees with float32's; the embeddings differ (the kernels really changed)
    image = sample_image((200, 240), n_cells=14, seed=3)
    ours, theirs = SAMPredictor(demo_int8), SAMPredictor(demo_float)
    ours.set_image(image)
    theirs.set_image(image)
    drift = np.linalg.norm(ours.get_image_embedding() - theirs.get_image_embedding())
    assert 0 < drift / np.linalg.norm(theirs.get_image_embedding()) < 0.05
    ious = []
    for point in point_grid(image.shape, 5):
        a, _ = ours.predict_best(point[None], np.array([1]))
        b, _ = theirs.predict_best(point[None], np.array([1]))
        union = (a | b).sum()
        ious.append((a & b).sum() / union if union else 1.0)
    assert np.mean(ious) >= MIN_AGREEMENT


def test_an_encoder_below_the_threshold_is_refused(monkeypatch):
    # no encoder reaches a mean IoU above 1: the measured agreement is refused, with its figure
    monkeypatch.setattr(quantization, "MIN_AGREEMENT", 1.01)
    with pytest.raises(ModelLoadError, match=r"mean mask IoU 0\.9\d+ < 1\.01 over 64 point"):
        load_model("demo_nuclei", quantize="int8")


@pytest.mark.parametrize("value", ["int4", "INT9", 8, "float8"])
def test_bad_quantize_values_are_one_clear_error(value):
    with pytest.raises(ModelLoadError, match="Unknown quantization"):
        load_model("missing.pth", quantize=value)  # before the model is looked for


def test_quantize_with_a_dtype_policy_is_refused_and_none_is_float32():
    with pytest.raises(ModelLoadError, match="cannot be combined"):
        load_model("missing.pth", quantize="int8", dtype_policy="mixed_bfloat16")
    assert load_model("demo_nuclei", quantize="none").quantization is None


@pytest.mark.other_backends(backends=("tensorflow",))
def test_an_int8_network_is_not_saved_exported_or_fine_tuned(demo_int8, tmp_path):
    from napari_sam_keras import export_micro_sam, finetune
    from napari_sam_keras.model.keras_files import save_preset

    image, labels = sample_image((64, 64), n_cells=3, with_labels=True)
    for call in (
        lambda: save_model(demo_int8, tmp_path / "m"),
        lambda: save_preset(demo_int8, tmp_path / "p"),
        lambda: export_micro_sam(demo_int8, tmp_path / "m.pt"),
        lambda: finetune(demo_int8, [image], [labels], epochs=1),
    ):
        with pytest.raises(SAMError, match="quantized to int8"):
            call()
    assert list(tmp_path.iterdir()) == []


def test_cli_quantize_reaches_load_model(capsys, tmp_path):
    image = tmp_path / "nuclei.tif"
    tifffile.imwrite(image, sample_image((96, 120), n_cells=4))
    store = tmp_path / "e.zarr"
    status, _, err = run_cli(
        capsys, "embed", image, "--model", "demo_nuclei", "--quantize", "int8", "--out", store
    )
    assert status == 0, err
    assert "model demo_nuclei (int8 encoder) loaded" in err
    from napari_sam_keras import EmbeddingStore

    assert EmbeddingStore(store, read_only=True).spec.model_key.endswith("+int8")

    status, _, err = run_cli(capsys, "embed", image, "--quantize", "int4", "--out", store)
    assert status == 2 and "--quantize: invalid choice: 'int4'" in err
    status, _, err = run_cli(
        capsys,
        "finetune",
        "--images",
        image,
        "--labels",
        image,
        "--quantize",
        "int8",
        "--out",
        tmp_path / "m",
    )
    assert status == 2 and "leave out --quantize" in err


def test_segment_batch_quantize_is_checked_first(tmp_path):
    from napari_sam_keras import segment_batch

    with pytest.raises(SAMError, match="not to mode='concept'"):
        segment_batch([], tmp_path / "out", mode="concept", quantize="int8")
    with pytest.raises(SAMError, match="for a loaded network"):
        segment_batch([], tmp_path / "out", model=object(), quantize="int8")
    assert not (tmp_path / "out").exists()


@pytest.mark.other_backends(backends=("torch",))
def test_int8_is_refused_on_torch_on_a_cpu():
    import keras
    import torch

    if keras.backend.backend() != "torch" or torch.cuda.is_available():
        pytest.skip("for the torch backend on a CPU (tests/other_backends.py)")
    with pytest.raises(ModelLoadError, match="not offered on the torch backend"):
        load_model("missing.pth", quantize="int8")  # before the model is looked for


def test_quantizing_collects_garbage_once(monkeypatch):
    """Keras collects garbage for every kernel it drops: seconds each in a napari session's
    heap. The encoder is quantized with one collection at the end."""
    import gc

    from helpers import TINY

    from napari_sam_keras import build_sam
    from napari_sam_keras.model.quantization import quantize_encoder

    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a, **k: calls.append(1) or 0)
    network = quantize_encoder(build_sam(TINY, seed=0), "int8", check=False)
    assert len(encoder_kernel_dtypes(network)) > 1 and calls == [1]
