"""Which model is proposed when none is named: the user's, the cached default, else the demo."""

from __future__ import annotations

import os

import pytest

from napari_sam_keras.model.config import DEFAULT_MODEL, MODEL_ENV_VAR
from napari_sam_keras.model.model_choice import (
    DEMO_MODEL,
    preset_weights_cached,
    proposed_default,
)


@pytest.fixture
def kaggle_cache(tmp_path, monkeypatch):
    """An empty kagglehub cache, and no model named in the environment."""
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    return tmp_path / "kaggle"


def download(name: str, complete: bool = True) -> None:
    """Put preset ``name``'s weights file into kagglehub's cache as a download would."""
    from kagglehub.cache import Cache, get_cached_path
    from kagglehub.handle import parse_model_handle

    handle = parse_model_handle(f"keras/sam/keras/{name}/2")
    target = get_cached_path(handle, "model.weights.h5")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(b"weights")
    if complete:
        Cache().mark_as_complete(handle, "model.weights.h5")


def test_without_weights_the_demo_model_is_proposed_and_said_to_be_a_demo(kaggle_cache):
    choice = proposed_default()
    assert choice.source == DEMO_MODEL
    assert "synthetic blobs" in choice.note and MODEL_ENV_VAR in choice.note


def test_an_interrupted_download_does_not_count(kaggle_cache):
    (kaggle_cache / "models/keras/sam/keras" / DEFAULT_MODEL / "2").mkdir(parents=True)
    download(DEFAULT_MODEL, complete=False)
    assert not preset_weights_cached(DEFAULT_MODEL)
    assert proposed_default().source == DEMO_MODEL


def test_downloaded_weights_make_the_default_preset_proposed(kaggle_cache):
    download(DEFAULT_MODEL)
    assert preset_weights_cached(DEFAULT_MODEL)
    assert proposed_default().source == DEFAULT_MODEL and proposed_default().note == ""
    assert not preset_weights_cached("sam_large_sa1b")


def test_the_environment_variable_wins(kaggle_cache, monkeypatch):
    monkeypatch.setenv(MODEL_ENV_VAR, "/data/sam_vit_b_01ec64.pth")
    assert proposed_default().source == "/data/sam_vit_b_01ec64.pth"
    assert proposed_default().note == ""
