"""The model picker's "int8 encoder" option: remembered, loads the int8 encoder, segments;
hidden (and off) in the Fine-tune widget.  Needs a display: run under ``xvfb-run -a``."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # TensorFlow before any canvas (see test_napari_widgets)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"


def test_int8_option_is_remembered_loads_int8_and_segments(make_napari_viewer):
    from napari_sam_keras.napari_adapter.session.settings import encoder_quantization, recent_models
    from napari_sam_keras.sample_data import sample_image

    viewer = make_napari_viewer()
    image, truth = sample_image((96, 120), n_cells=4, seed=1, with_labels=True)
    viewer.add_image(image, name="img")
    _d, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Interactive segmentation")
    picker = widget.model_picker
    widget.model.value = "demo_nuclei"
    assert picker.int8.value is False and picker.source() == "demo_nuclei"

    picker.int8.value = True
    assert encoder_quantization() == "int8"
    assert picker.source() == "demo_nuclei +int8"
    network = widget.model_store.get(picker.source())
    assert network.quantization == "int8" and network.key.endswith("+int8")

    rows, cols = np.nonzero(truth == 1)
    widget.points.value.add([int(rows.mean()), int(cols.mean())])  # a click on a nucleus
    labels = widget.run()  # the real int8 demo model, end to end
    assert labels is not None and labels.data.any()
    assert recent_models()[0] == "demo_nuclei"  # the model, not the option, is a recent model

    # a new widget opens with the option on; the Fine-tune widget never offers it
    _d, automatic = viewer.window.add_plugin_dock_widget(PLUGIN, "Automatic segmentation")
    assert automatic.model_picker.int8.value is True
    _d, finetune = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    finetune.model.value = "demo_nuclei"
    assert not finetune.model_picker.int8.visible
    assert finetune.model_picker.source() == "demo_nuclei"
    picker.int8.value = False
    assert encoder_quantization() is None and picker.source() == "demo_nuclei"
