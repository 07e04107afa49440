"""Fixtures shared by the napari tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    """The widgets' settings file (recent models) goes to a temporary config folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture(autouse=True)
def session(_settings_in_tmp):
    """A fresh :class:`Session` for the test's widgets: no model loaded by an earlier test,
    nothing in memory, no embeddings folder (the settings are in a temporary folder)."""
    from napari_sam_keras.napari_adapter.session import Session, use_session

    with use_session(Session()) as fresh:
        yield fresh


@pytest.fixture
def errors(monkeypatch):
    """Error notifications shown during the test."""
    from napari.utils import notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    return shown
