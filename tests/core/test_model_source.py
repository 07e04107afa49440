"""``resolve_model``: the one rule that says what a model name means (no Keras, no weights)."""

from __future__ import annotations

import os

import pytest

from napari_sam_keras import ModelLoadError
from napari_sam_keras.model.config import DEFAULT_MODEL, MODEL_ENV_VAR
from napari_sam_keras.model.model_source import DEMO_MODELS, resolve_model


def test_names_presets_and_the_default(monkeypatch):
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert resolve_model(None).name == DEFAULT_MODEL
    assert resolve_model("sam_large_sa1b").kind == "preset"
    demo = resolve_model("demo_nuclei")
    assert (demo.name, demo.kind, demo.path) == ("demo_nuclei", "demo", DEMO_MODELS["demo_nuclei"])
    monkeypatch.setenv(MODEL_ENV_VAR, "demo_nuclei")
    assert resolve_model(None).kind == "demo"
    for empty in ("", "  "):  # an unset shell variable is an error, not the default
        with pytest.raises(ModelLoadError, match="No model given"):
            resolve_model(empty)


def test_files_and_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "preset").mkdir()
    (tmp_path / "preset" / "config.json").write_text("{}")
    (tmp_path / "preset" / "model.weights.h5").write_bytes(b"")
    folder = resolve_model("preset")
    assert folder.kind == "preset_dir" and folder.name == os.path.abspath("preset")
    # a weights file inside a preset folder, without an architecture of its own: the folder
    assert resolve_model("preset/model.weights.h5") == folder
    (tmp_path / "lone.weights.h5").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="weights only"):
        resolve_model("lone.weights.h5")
    (tmp_path / "lone.json").write_text("{}")
    assert resolve_model("lone.weights.h5").kind == "weights_file"
    (tmp_path / "sam.pth").write_bytes(b"")
    assert resolve_model(tmp_path / "sam.pth").kind == "checkpoint"
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ModelLoadError, match="Don't know how to load"):
        resolve_model("notes.txt")
    with pytest.raises(ModelLoadError, match="not found.*demo_nuclei"):
        resolve_model("missing.pth")
    # a folder of a demo model's name in the working directory wins over the shipped one
    (tmp_path / "demo_nuclei").mkdir()
    assert resolve_model("demo_nuclei").kind == "preset_dir"
