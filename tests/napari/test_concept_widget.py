"""The automatic widget's "find all like the examples" mode (SAM 3), under ``xvfb-run -a``.

The model is the tiny random Hugging Face SAM 3 of ``tests/sam3_oracle.py``, loaded by
``load_concept_model`` (the session fixture, kept uncompiled: the tiny model compiles for
longer than it runs) and handed to the widget's per-session model store; the labels the
widget writes are checked against :class:`~napari_sam_keras.ConceptSegmenter` on the same
slice and exemplars.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # before any viewer exists (see test_napari_widgets)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
AUTOMATIC = "Automatic segmentation"
SHAPE = (60, 90)


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _image() -> np.ndarray:
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    image = 300 + 3000 * ((yy - 18) ** 2 + (xx - 23) ** 2 < 120)
    image = image + 2000 * ((yy - 40) ** 2 + (xx - 68) ** 2 < 150)
    return image.astype(np.uint16)


def _same_objects(got: np.ndarray, expected: np.ndarray) -> bool:
    if not np.array_equal(got > 0, expected > 0):
        return False
    pairs = np.unique(np.stack([got[got > 0], expected[expected > 0]]), axis=1)
    return len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


def test_find_all_like_an_exemplar_box_writes_labels_in_one_undo_step(
    make_napari_viewer, tiny_sam3, tiny_concept_model
):
    from napari_sam_keras import ConceptSegmenter
    from napari_sam_keras.napari_adapter.widgets import concept_mode

    folder = str(tiny_sam3[0])
    concept_mode._MODELS[folder] = tiny_concept_model  # the widget's store, already loaded
    image = _image()
    viewer = make_napari_viewer()
    layer = viewer.add_image(image, name="img")
    # napari rectangles are (row, column) corners: one positive box, one negative
    boxes = [np.array([[6, 8], [30, 38]]), np.array([[24, 52], [54, 84]])]
    shapes = viewer.add_shapes(
        boxes, shape_type="rectangle", name="examples", features={"label": ["", "negative"]}
    )
    shapes.features["label"] = ["positive", "negative"]
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, AUTOMATIC)
    widget.find_all_like.value = True  # first: the SAM 1 store then leaves the model alone
    widget.model.value = folder
    widget.reset_choices()
    widget.exemplars.value = shapes
    widget.score_threshold.value = 0.0  # random weights: keep every query
    target = viewer.add_labels(np.zeros(SHAPE, np.int32), name="target")
    target.data[:3, :3] = 7  # an existing label survives
    widget.labels.value = target
    assert widget.run_button.text == "Find all like the examples"

    assert widget.run() is target, widget.status.details
    expected = ConceptSegmenter(tiny_concept_model).segment(
        image,
        exemplars=[(8, 6, 38, 30), (52, 24, 84, 54)],
        exemplar_labels=[1, 0],
        score_threshold=0.0,
        contrast_limits=tuple(layer.contrast_limits),
    )
    expected[:3, :3] = 0
    written = np.where(target.data == 7, 0, target.data)
    assert expected.max() > 0
    assert _same_objects(written, expected)
    assert (target.data[:3, :3] == 7).all()
    assert widget.status.value.startswith("wrote"), widget.status.value
    target.undo()
    assert set(np.unique(target.data)) == {0, 7}


def test_no_exemplar_and_no_text_is_one_clear_error(make_napari_viewer, tiny_sam3):
    viewer = make_napari_viewer()
    viewer.add_image(_image(), name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, AUTOMATIC)
    widget.find_all_like.value = True
    widget.model.value = str(tiny_sam3[0])
    assert widget.run() is None
    assert "No examples" in widget.status.value
    assert len(viewer.layers) == 1
