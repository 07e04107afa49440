"""Fixtures shared by the napari tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    """The widgets' settings file (recent models) goes to a temporary config folder, and no
    embeddings folder or layer store is left over from another test."""
    from napari_sam_keras.napari_adapter import layer_stores

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    layer_stores.set_folder(None)
    yield
    layer_stores.set_folder(None)
    layer_stores.forget_stores()


@pytest.fixture
def errors(monkeypatch):
    """Error notifications shown during the test."""
    from napari.utils import notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    return shown
