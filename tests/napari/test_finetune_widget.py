"""The Fine-tune dock widget in a real viewer (needs a display: run under ``xvfb-run -a``).

It trains the demo model for real (a couple of short epochs) from the Labels layers of the
viewer, draws the loss and IoU curves, and the saved model shows up in the Interactive
segmentation widget's model list, loaded already.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # TensorFlow before any OpenGL canvas (see test_napari_widgets)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    """Settings (recent models) and the default models folder go to temporary folders."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def _annotated_viewer(make_napari_viewer, count=3):
    """A viewer with ``count`` sample images, each with its ground truth as a Labels layer."""
    from napari_sam_keras.sample_data import sample_image

    viewer = make_napari_viewer()
    for i in range(count):
        image, labels = sample_image(shape=(128, 128), n_cells=6, seed=10 + i, with_labels=True)
        viewer.add_image(image, name=f"cells{i}")
        viewer.add_labels(labels, name=f"cells{i} SAM labels")
    return viewer


def test_the_widget_finds_annotated_layers_and_the_series_folder(make_napari_viewer, tmp_path):
    viewer = _annotated_viewer(make_napari_viewer, count=2)
    viewer.add_image(np.zeros((40, 40), np.uint16), name="not annotated")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    summary = widget.controls.data_summary.value
    assert "cells0" in summary and "cells1 SAM labels" in summary
    assert "not annotated" not in summary
    data = widget.training_data()
    assert data.names == ["cells0", "cells1"] and data.images[0].shape == (128, 128, 3)
    assert data.objects() == sum(len(np.unique(lab)) - 1 for lab in data.labels)
    viewer.layers.remove("cells1 SAM labels")
    assert "cells1" not in widget.controls.data_summary.value
    assert widget.controls.series_row.native.isHidden()
    widget.controls.source.value = "image-series folder"
    assert not widget.controls.series_row.native.isHidden()
    widget.controls.series_folder.value = str(tmp_path)
    assert "no images" in widget.controls.data_summary.value


def test_no_annotations_is_one_error_and_nothing_runs(make_napari_viewer, monkeypatch):
    from napari.utils import notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint16), name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    assert widget.run() is None
    assert len(shown) == 1 and "No training data" in shown[0]
    assert widget.status.error_shown and not widget.busy


def test_the_plot_draws_each_history_it_is_given(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    widget.plot.show_history(
        [
            {"epoch": 1, "loss": 0.9, "val_point_iou": 0.3, "val_box_iou": 0.5, "val_msa": None},
            {"epoch": 2, "loss": 0.5, "val_point_iou": 0.6, "val_box_iou": 0.7, "val_msa": None},
        ]
    )
    loss = widget.plot.lines["loss"]
    assert list(loss.get_xdata()) == [1, 2] and list(loss.get_ydata()) == [0.9, 0.5]
    assert not widget.plot.lines["val_msa"].get_visible()  # no instance decoder figures
    widget.plot.clear()
    assert len(loss.get_xdata()) == 0


def test_fine_tune_from_labels_layers_plots_and_offers_the_model(make_napari_viewer, tmp_path):
    viewer = _annotated_viewer(make_napari_viewer, count=2)
    _d, interactive = viewer.window.add_plugin_dock_widget(PLUGIN, "Interactive segmentation")
    _d, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    widget.model.value = "demo_nuclei"
    widget.controls.epochs.value = 2
    widget.controls.augment.value = False  # the quick choice (and CI time)
    widget.controls.validation.value = 0.5  # one image trains, one is held out
    widget.training_options = {"objects_per_image": 3, "prompt_iterations": 1}  # CI time
    out = tmp_path / "my-model"
    widget.controls.output.value = str(out)
    epochs_drawn = []
    widget.plot.canvas.draw_idle = lambda: epochs_drawn.append(
        len(widget.plot.lines["loss"].get_xdata())
    )
    outcome = widget.run()
    assert outcome is not None, widget.status.details or widget.status.value
    assert out.is_dir() and outcome.path == out
    assert json.loads((out / "training.json").read_text())["settings"]["augment"] is False
    # the live plot was drawn after each epoch (from the worker's reports) and at the end
    loss = widget.plot.lines["loss"]
    assert list(loss.get_xdata()) == [1, 2]
    assert np.isfinite(loss.get_ydata()).all()
    assert len(widget.plot.lines["val_point_iou"].get_xdata()) == 2
    assert 1 in epochs_drawn, epochs_drawn  # epoch 1 drawn while epoch 2 was training
    # the before/after table
    names = [row[0] for row in outcome.rows]
    assert "IoU, 1 click" in names and "before" in widget.results.value
    # the new model: in the interactive widget's recent list, and loaded already
    assert str(out) in interactive.model_picker.recent.choices
    interactive.model_picker.recent.value = str(out)
    assert interactive.model.value == str(out)
    assert interactive.model_store.loaded(str(out)) is outcome.network
    assert widget.controls.output.value == ""  # the next run gets a new folder
