"""Fine-tuning with a tiny random SAM: every mode trains on every backend, LoRA changes only
its adapters and survives saving merged, save -> load and the micro-sam export give the same
outputs, a killed run resumes, a cancelled one leaves no half-written file, bad input is one
clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY

from napari_sam_keras import (
    OperationCancelled,
    SAMPredictor,
    TrainingDataError,
    TrainingSettingsError,
    build_sam,
    finetune,
    load_model,
    save_model,
)
from napari_sam_keras.files.atomic_write import OutputExistsError, leftover_partials

ROOT = Path(__file__).resolve().parents[2]


def blob_data(count: int = 1, size: int = 64):
    """Bright discs on a dark background (labels 1..3 per image)."""
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for i in range(count):
        lab = np.zeros((size, size), np.int32)
        for k, (cy, cx, r) in enumerate(((16, 18, 9), (44, 22, 10), (30, 48, 8)), start=1):
            lab[(yy - cy - i) ** 2 + (xx - cx) ** 2 < r * r] = k
        images.append((200 + 3000 * (lab > 0) + 40 * ((xx + yy + i) % 5)).astype(np.uint16))
        labels.append(lab)
    return images, labels


SMALL = dict(epochs=3, validation=0.0, objects_per_image=2, prompt_iterations=1, learning_rate=3e-3)


def _epoch_losses(result):
    return [h["loss"] for h in result.history]


@pytest.mark.other_backends  # every mode on every backend (issue 20)
@pytest.mark.parametrize("mode", ["decoder", "lora", "full"])
def test_modes_train_and_the_loss_decreases(mode, tmp_path):
    base = build_sam(TINY, seed=0)
    images, labels = blob_data()
    before = [np.array(v.numpy()) for v in base.model.weights]
    result = finetune(
        base, images, labels, mode=mode, instance_decoder=(mode == "decoder"), seed=1, **SMALL
    )
    losses = _epoch_losses(result)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    # the base network is not changed; the result is another network
    assert all(
        np.array_equal(b, v.numpy()) for b, v in zip(before, base.model.weights, strict=True)
    )
    assert result.model is not base and result.model.key != base.key
    # the encoder's weights in the same order (LoRA adapters are extra weights of a layer)
    mine = [v for v in result.model.model.backbone.weights if "lora_kernel" not in v.path]
    theirs = base.model.backbone.weights
    changed = [
        a.path
        for a, b in zip(mine, theirs, strict=True)
        if not np.array_equal(a.numpy(), b.numpy())
    ]
    adapters = [v for v in result.model.model.backbone.weights if "lora_kernel" in v.path]
    if mode == "decoder":
        assert not changed  # the encoder is frozen
        assert result.model.instance_decoder is not None
        assert result.history[-1]["instance_loss"] < result.history[0]["instance_loss"]
    elif mode == "lora":
        # only the adapters change in the encoder (b starts at zero)
        assert not changed and adapters
        assert any(np.abs(v.numpy()).max() > 0 for v in adapters if "lora_kernel_b" in v.path)
        _check_lora_merged_on_save(result, images[0], tmp_path)
    else:
        assert changed and not adapters


def _check_lora_merged_on_save(result, image, tmp_path):
    adapted = SAMPredictor(result.model, warm_up=False)
    adapted.set_image(image)
    saved = load_model(save_model(result, tmp_path / "lora_model"))
    assert not any("lora" in v.path for v in saved.model.weights)
    merged = SAMPredictor(saved, warm_up=False)
    merged.set_image(image)
    np.testing.assert_allclose(
        merged.get_image_embedding(), adapted.get_image_embedding(), rtol=1e-4, atol=1e-4
    )
    point = np.array([[18.0, 16.0]])
    _, s_a, low_a = adapted.predict(point, np.ones(1))
    _, s_m, low_m = merged.predict(point, np.ones(1))
    np.testing.assert_allclose(low_m, low_a, atol=2e-3)
    np.testing.assert_allclose(s_m, s_a, atol=1e-4)


@pytest.fixture(scope="module")
def tuned():
    """A tiny network fine-tuned in decoder mode with a new instance decoder."""
    images, labels = blob_data(2)
    return finetune(
        build_sam(TINY, seed=3),
        images,
        labels,
        epochs=1,
        validation=0.5,
        seed=0,
        objects_per_image=2,
        prompt_iterations=1,
    )


def test_save_load_round_trip_gives_identical_outputs(tuned, tmp_path):
    from napari_sam_keras import InstanceSegmenter

    images, _ = blob_data(1)
    folder = save_model(tuned, tmp_path / "model")
    info = json.loads((folder / "training.json").read_text())
    assert info["settings"]["mode"] == "decoder" and "after" in info and "before" in info
    loaded = load_model(folder)
    assert loaded.instance_decoder is not None
    ours, theirs = SAMPredictor(tuned.model, warm_up=False), SAMPredictor(loaded, warm_up=False)
    for p in (ours, theirs):
        p.set_image(images[0])
    np.testing.assert_array_equal(ours.get_image_embedding(), theirs.get_image_embedding())
    a, b = (
        ours.predict(np.array([[18.0, 16.0]]), np.ones(1)),
        theirs.predict(np.array([[18.0, 16.0]]), np.ones(1)),
    )
    np.testing.assert_array_equal(a[2], b[2])
    maps_a = InstanceSegmenter(tuned.model, predictor=ours).predict_maps()
    maps_b = InstanceSegmenter(loaded, predictor=theirs).predict_maps()
    np.testing.assert_array_equal(maps_a, maps_b)
    # never over an existing folder unless asked
    with pytest.raises(OutputExistsError):
        save_model(tuned, folder)
    assert save_model(tuned, folder, overwrite=True) == folder


def test_micro_sam_export_loads_strictly_into_official_sam(tuned, tmp_path):
    torch = pytest.importorskip("torch")
    from official_sam import build_official_sam, install_torchvision_shim

    from napari_sam_keras import export_micro_sam

    install_torchvision_shim()
    from segment_anything import SamPredictor

    path = export_micro_sam(tuned, tmp_path / "tuned.pt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"model_state", "decoder_state"}
    assert all(k.startswith("sam.") for k in checkpoint["model_state"])
    sam = build_official_sam(TINY, seed=9)  # other weights, replaced by the export's
    state = {k.removeprefix("sam."): v for k, v in checkpoint["model_state"].items()}
    sam.load_state_dict(state, strict=True)
    sam.eval()

    images, _ = blob_data(1)
    rgb = np.repeat((images[0] / images[0].max() * 255).astype(np.uint8)[..., None], 3, -1)
    official = SamPredictor(sam)
    official.set_image(rgb)
    point = np.array([[18.0, 16.0]])
    masks_o, scores_o, _ = official.predict(point, np.ones(1), multimask_output=True)
    ours = SAMPredictor(tuned.model, warm_up=False)
    ours.set_image(rgb)
    masks_k, scores_k, _ = ours.predict(point, np.ones(1), multimask_output=True)
    assert (masks_o == masks_k).mean() > 0.999
    np.testing.assert_allclose(scores_k, scores_o, atol=1e-3)


def test_micro_sam_export_decoder_reads_back(tuned, tmp_path):
    """The exported decoder_state of a decoder made for a small embedding (not micro-sam's
    256 channels) reads back with the same architecture and the same maps."""
    torch = pytest.importorskip("torch")
    from napari_sam_keras import export_micro_sam
    from napari_sam_keras.model.decoder_conversion import decoder_from_state_dict

    path = export_micro_sam(tuned, tmp_path / "tuned.pt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    ours = SAMPredictor(tuned.model, warm_up=False)
    images, _ = blob_data(1)
    ours.set_image(
        np.repeat((images[0] / images[0].max() * 255).astype(np.uint8)[..., None], 3, -1)
    )
    decoder_sd = {k: v.numpy() for k, v in checkpoint["decoder_state"].items()}
    again = decoder_from_state_dict(decoder_sd)
    mine = tuned.model.instance_decoder
    assert mine.config.embed_dim == TINY.prompt_embed_dim != 256
    assert again.config == mine.config
    # the decoder runs on channels-last embeddings; get_image_embedding is the official
    # predictor's channels-first layout
    emb = np.transpose(ours.get_image_embedding(), (0, 2, 3, 1))
    np.testing.assert_allclose(again.runner()(emb), mine.runner()(emb), atol=1e-5)


RESUME_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}, {here!r}]
    from test_finetune_modes import blob_data, SMALL
    from helpers import TINY
    from napari_sam_keras import build_sam, finetune
    images, labels = blob_data()
    steps = 4  # one image in 4 variants

    def progress(done, total):
        if done == 2 * steps + 1:  # epoch 2's checkpoint is written: wait to be killed
            print("READY", flush=True)
            time.sleep(600)

    finetune(build_sam(TINY, seed=0), images, labels, instance_decoder=False, seed=1,
             checkpoint_dir=sys.argv[1], progress=progress, **SMALL)
    """
)


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        RESUME_SCRIPT.format(
            root=str(ROOT), tests=str(ROOT / "tests"), here=str(Path(__file__).parent)
        )
    )
    folder = tmp_path / "checkpoints"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (folder / "checkpoint.npz").is_file()
    assert not leftover_partials(folder / "checkpoint.npz")
    images, labels = blob_data()
    reported = []
    resumed = finetune(
        build_sam(TINY, seed=0),
        images,
        labels,
        instance_decoder=False,
        seed=1,
        checkpoint_dir=folder,
        progress=lambda done, total: reported.append(done),
        **SMALL,
    )
    assert reported[0] == 2 * 4 + 1  # the third epoch only
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # another run (other settings) refuses this checkpoint
    with pytest.raises(TrainingSettingsError, match="another fine-tuning run"):
        finetune(
            build_sam(TINY, seed=0),
            images,
            labels,
            instance_decoder=False,
            seed=2,
            checkpoint_dir=folder,
            **SMALL,
        )


def test_without_augmentation_an_epoch_is_one_step_per_image():
    images, labels = blob_data()
    steps = []
    result = finetune(
        build_sam(TINY, seed=0),
        images,
        labels,
        instance_decoder=False,
        augment=False,
        progress=lambda done, total: steps.append((done, total)),
        **SMALL,
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]  # 3 epochs of the one image, no variants
    assert result.training["settings"]["augment"] is False


def test_cancel_leaves_only_complete_files(tmp_path):
    images, labels = blob_data()
    folder = tmp_path / "checkpoints"

    def cancel(done, total):
        if done == 6:  # in the second epoch
            raise OperationCancelled()

    with pytest.raises(OperationCancelled):
        finetune(
            build_sam(TINY, seed=0),
            images,
            labels,
            instance_decoder=False,
            checkpoint_dir=folder,
            progress=cancel,
            **SMALL,
        )
    assert [p.name for p in folder.iterdir()] == ["checkpoint.npz"]  # epoch 1, complete
    with np.load(folder / "checkpoint.npz") as data:
        assert json.loads(str(data["state"]))["epochs_done"] == 1


def test_an_interrupted_save_leaves_no_model_folder(tuned, tmp_path, monkeypatch):
    from napari_sam_keras.keras_layers.instance_decoder import UNETRInstanceDecoder

    def interrupted(self, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(UNETRInstanceDecoder, "save_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(tuned, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def _good():
    return blob_data()


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda i, lab: (i, lab[:0]), TrainingDataError, "1 images but 0 label"),
        (lambda i, lab: (i, [lab[0][:32]]), TrainingDataError, "same pixels"),
        (lambda i, lab: (i, [lab[0].astype(np.float32)]), TrainingDataError, "not integers"),
        (lambda i, lab: (i, [np.zeros_like(lab[0])]), TrainingDataError, "no object at all"),
        (lambda i, lab: ([], []), TrainingDataError, "No training images"),
        (lambda i, lab: (i, [-lab[0]]), TrainingDataError, "negative"),
        (lambda i, lab: ([i[0].astype(float) * np.nan], lab), TrainingDataError, "NaN"),
        (lambda i, lab: ("images", lab), TrainingDataError, "list of arrays"),
    ],
)
def test_bad_data_is_one_clear_error(change, error, message):
    images, labels = change(*_good())
    with pytest.raises(error, match=message):
        finetune("no-such-model-is-loaded", images, labels)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(mode="everything"), "Unknown fine-tuning mode"),
        (dict(epochs=0), "epochs must be an integer >= 1"),
        (dict(epochs=1.5), "epochs must be"),
        (dict(validation=1.0), "validation must be a fraction"),
        (dict(objects_per_image=0), "objects_per_image"),
        (dict(prompt_iterations=-1), "prompt_iterations"),
        (dict(learning_rate=0), "learning_rate"),
        (dict(embeddings=3), "embeddings must be"),
    ],
)
def test_bad_settings_are_one_clear_error(settings, message):
    images, labels = _good()
    with pytest.raises(TrainingSettingsError, match=message):
        finetune("no-such-model-is-loaded", images, labels, **settings)
