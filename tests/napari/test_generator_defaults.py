"""The automatic widget's generator controls show ``generator_settings.DEFAULTS``."""

from __future__ import annotations

import pytest

from napari_sam_keras.napari_adapter.widgets.automatic_controls import generator_controls
from napari_sam_keras.segmentation.generator_settings import DEFAULTS


def test_the_widget_controls_show_the_defaults(qtbot):
    shown = {control.name: control.value for control in generator_controls()}
    assert len(shown) == 5
    assert shown == {name: pytest.approx(getattr(DEFAULTS, name)) for name in shown}


def test_the_widget_shows_the_models_own_settings_and_hints_when_few_are_found(
    make_napari_viewer,
):
    """The demo model's recommended settings replace the official ones in the controls
    (a value the user changed stays); a run that finds few objects says which setting to
    loosen."""
    from napari_sam_keras import load_model
    from napari_sam_keras.runtime.backend import import_ml_stack
    from napari_sam_keras.sample_data import sample_image
    from napari_sam_keras.segmentation.generator_settings import settings_for_model

    import_ml_stack()
    viewer = make_napari_viewer()
    viewer.add_image(sample_image((96, 96), n_cells=4, seed=2), name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget(
        "napari-sam-keras", "Automatic segmentation"
    )
    widget.box_nms_thresh.value = 0.5  # the user's own value
    network = load_model("demo_nuclei")
    widget.model.value = "demo_nuclei"
    widget.model_store.add("demo_nuclei", network)
    widget.load_model(blocking=True)
    own = settings_for_model(network)
    assert widget.points_per_side.value == own.points_per_side != DEFAULTS.points_per_side
    assert widget.pred_iou_thresh.value == pytest.approx(own.pred_iou_thresh)
    assert widget.box_nms_thresh.value == pytest.approx(0.5)

    widget.points_per_side.value = 4
    widget.pred_iou_thresh.value = 0.99  # almost every mask is rejected
    widget.run()
    assert "lower pred_iou_thresh (now 0.99" in widget.status.value, widget.status.value
