"""What a new user meets in the first hour (issue 24), in a real viewer under Xvfb.

Which Labels layer is proposed as the target, the widgets following the active image,
the preview never offered as a target, controls settable from a script, tooltips.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # TensorFlow before any OpenGL canvas (see tests/napari/test_napari_widgets.py)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
INTERACTIVE = "Interactive segmentation"
AUTOMATIC = "Automatic segmentation"


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def dock(make_napari_viewer):
    """dock(name, image=None) -> (viewer, widget); the image is added first when given."""

    def make(name, image=None, **kwargs):
        viewer = make_napari_viewer()
        if image is not None:
            viewer.add_image(image, name="img", **kwargs)
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        return viewer, widget

    return make


@pytest.mark.parametrize("name", [INTERACTIVE, AUTOMATIC])
def test_widgets_follow_a_newly_opened_image(dock, name):
    viewer, widget = dock(name, np.zeros((40, 40), np.uint8))
    assert widget.image.value is viewer.layers["img"]
    new = viewer.add_image(np.zeros((2, 30, 30), np.uint8), name="stack")
    assert widget.image.value is new
    viewer.layers.selection.active = viewer.layers["img"]
    assert widget.image.value is viewer.layers["img"]


@pytest.mark.parametrize("name", [INTERACTIVE, AUTOMATIC])
def test_another_images_hidden_labels_are_never_proposed(dock, name):
    viewer, widget = dock(name, np.zeros((40, 40), np.uint8))
    theirs = viewer.add_labels(np.zeros((40, 40), np.int32), name="img SAM labels")
    assert widget.labels.value is theirs  # the image's own labels: proposed
    theirs.visible = False
    viewer.add_image(np.zeros((40, 40), np.uint8), name="second")  # same shape, new image
    assert widget.image.value.name == "second"
    assert widget.labels.value is None  # not the first image's labels, hidden beneath it


@pytest.mark.parametrize("name", [INTERACTIVE, AUTOMATIC])
def test_labels_of_another_scale_are_not_proposed(dock, name):
    viewer, widget = dock(name, np.zeros((40, 40), np.uint8), scale=(0.5, 0.5))
    viewer.add_labels(np.zeros((40, 40), np.int32), name="unscaled")
    assert widget.labels.value is None
    scaled = viewer.add_labels(np.zeros((40, 40), np.int32), name="scaled", scale=(0.5, 0.5))
    assert widget.labels.value is scaled


@pytest.mark.parametrize("name", [INTERACTIVE, AUTOMATIC])
def test_a_preview_layer_is_never_a_target_choice(dock, name):
    from napari_sam_keras.napari_adapter.layer_pickers import PREVIEW_ROLE

    viewer, widget = dock(name, np.zeros((40, 40), np.uint8))
    preview = viewer.add_labels(
        np.zeros((40, 40), np.uint8), name="SAM preview", metadata=dict(PREVIEW_ROLE)
    )
    widget.reset_choices()
    assert widget.labels.value is None
    assert all(choice is not preview for choice in widget.labels.choices)


def test_embeddings_folder_set_from_a_script_is_used_by_both_widgets(dock, tmp_path):
    from napari_sam_keras.napari_adapter.layer_stores import current_folder

    viewer, widget = dock(INTERACTIVE, np.zeros((40, 40), np.uint8))
    _dock, auto = viewer.window.add_plugin_dock_widget(PLUGIN, AUTOMATIC)
    widget.embeddings_folder.value = str(tmp_path / "emb")
    assert current_folder() == str(tmp_path / "emb")
    assert auto.embeddings_folder.value == str(tmp_path / "emb")
    auto.embeddings_folder.value = ""
    assert current_folder() is None and widget.embeddings_folder.value == ""


def _value_widgets(widget):
    """Every control of a dock widget (buttons too), nested containers included."""
    from magicgui.widgets import Container, Label, TextEdit
    from magicgui.widgets.bases import ValueWidget

    found = []
    for child in widget:
        if isinstance(child, Container):
            found += _value_widgets(child)
        elif isinstance(child, ValueWidget) and not isinstance(child, Label | TextEdit):
            found.append(child)  # Label and TextEdit only show text (the status line)
    return found


@pytest.mark.parametrize("name", [INTERACTIVE, AUTOMATIC, "Image series"])
def test_every_control_has_a_tooltip(dock, name):
    _viewer, widget = dock(name, np.zeros((40, 40), np.uint8))
    controls = _value_widgets(widget)
    missing = [w.name for w in controls if not (w.tooltip or "").strip()]
    assert controls and not missing, f"controls without a tooltip: {missing}"
