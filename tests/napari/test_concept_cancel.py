"""Cancelling "find all like the examples" (SAM 3), under ``xvfb-run -a``.

The job is the widget's own, on the tiny random Hugging Face SAM 3 of
``tests/sam3_oracle.py`` (the session's ``tiny_concept_model``); the model's real steps
are held at one place until the test has pressed cancel.  A cancel must stop the job
at its next step (the text's features, the image's features, the instances; per tile
and per slice), leave every layer as it was (no slice's labels written, not even the
slices done before), and leave the widget ready: the next run writes its labels in
one undo step.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_concept_widget import SHAPE, _image, _same_objects  # the same image and check

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # before any viewer exists (see test_napari_widgets)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
AUTOMATIC = "Automatic segmentation"
#: A positive exemplar around the first blob and a negative one around the second, as
#: napari rectangle corners (row, column); as in test_concept_widget (one compiled shape).
BOXES = [
    np.array([[6, 8], [6, 38], [30, 38], [30, 8]]),
    np.array([[24, 52], [24, 84], [54, 84], [54, 52]]),
]
EXEMPLARS = {"exemplars": [(8, 6, 38, 30), (52, 24, 84, 54)], "exemplar_labels": [1, 0]}
LABELS = {"label": ["positive", "negative"]}


class _Held:
    """A model step that waits, at its ``at``-th call, until the test releases it.

    ``calls`` counts every call of the watched steps (name -> count).
    """

    def __init__(self, model, monkeypatch, step: str, at: int = 1) -> None:
        self.reached, self.release = threading.Event(), threading.Event()
        self.calls = {"encode_text": 0, "encode_image": 0, "decode": 0}
        for name in self.calls:
            monkeypatch.setattr(model, name, self._watch(name, getattr(model, name), step, at))

    def _watch(self, name, real, step, at):
        def watched(*args, **kwargs):
            self.calls[name] += 1
            if name == step and self.calls[name] == at:
                self.reached.set()
                assert self.release.wait(30), "the test never released the step"
            return real(*args, **kwargs)

        return watched


def _widget(viewer, folder: str, shapes, target):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, AUTOMATIC)
    widget.find_all_like.value = True  # first: the SAM 1 store then leaves the model alone
    widget.model.value = folder
    widget.reset_choices()
    widget.exemplars.value = shapes
    widget.score_threshold.value = 0.0  # random weights: keep every query
    widget.labels.value = target
    return widget


def _layers(viewer) -> list[tuple[str, str, bytes]]:
    """Every layer's name, kind and data."""
    return [(lay.name, type(lay).__name__, np.asarray(lay.data).tobytes()) for lay in viewer.layers]


def _cancel_held(widget, held, qtbot) -> None:
    widget.run_button.native.click()  # in the background, as a user runs it
    assert held.reached.wait(300), widget.status.value  # a first call compiles first
    assert widget.busy and widget.cancel_button.enabled
    assert not widget.run_button.enabled
    widget.cancel()
    held.release.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    assert widget.status.value.startswith("cancelled"), widget.status.value


def test_cancel_on_a_stack_writes_no_slice_and_the_next_run_works(
    make_napari_viewer, tiny_sam3, tiny_concept_model, monkeypatch, qtbot
):
    """Cancelled while the second slice's image is encoded: the first slice is not written."""
    from napari_sam_keras import ConceptSegmenter
    from napari_sam_keras.napari_adapter.widgets import concept_mode

    folder = str(tiny_sam3[0])
    concept_mode._MODELS[folder] = tiny_concept_model  # the widget's store, already loaded
    stack = np.stack([_image()] * 3)
    viewer = make_napari_viewer()
    layer = viewer.add_image(stack, name="img")
    viewer.dims.set_current_step(0, 1)
    on_slice_1 = [np.column_stack([np.ones(4), box]) for box in BOXES]
    shapes = viewer.add_shapes(on_slice_1, shape_type="rectangle", name="examples", features=LABELS)
    target = viewer.add_labels(np.zeros(stack.shape, np.int32), name="target")
    target.data[:, :3, :3] = 7  # an existing label survives everything
    widget = _widget(viewer, folder, shapes, target)
    widget.all_slices.value = True
    before = _layers(viewer)

    held = _Held(tiny_concept_model, monkeypatch, "encode_image", at=2)
    _cancel_held(widget, held, qtbot)
    # slice 1 was done; slice 2 stopped between its image's features and its instances
    assert held.calls == {"encode_text": 2, "encode_image": 2, "decode": 1}
    assert _layers(viewer) == before  # no layer changed, added or removed: no partial labels
    assert widget.run_button.enabled and not widget.cancel_button.enabled

    assert widget.run() is target, widget.status.details  # the next run goes through
    assert widget.status.value.startswith("wrote"), widget.status.value
    expected = ConceptSegmenter(tiny_concept_model).segment(
        stack[0],
        **EXEMPLARS,
        score_threshold=0.0,
        contrast_limits=tuple(layer.contrast_limits),
    )
    expected[:3, :3] = 0
    assert expected.max() > 0
    written = np.where(target.data == 7, 0, target.data)
    for z in range(3):  # identical slices: the same objects, linked into the same 3D ids
        assert _same_objects(written[z], expected), z
        np.testing.assert_array_equal(written[z], written[0])
    assert (target.data[:, :3, :3] == 7).all()
    target.undo()  # the whole stack in one step
    assert _layers(viewer) == before


def test_cancel_during_the_text_stops_before_the_image(
    make_napari_viewer, tiny_sam3, tiny_concept_model, monkeypatch, qtbot
):
    from napari_sam_keras.napari_adapter.widgets import concept_mode

    folder = str(tiny_sam3[0])
    concept_mode._MODELS[folder] = tiny_concept_model
    viewer = make_napari_viewer()
    viewer.add_image(_image(), name="img")
    shapes = viewer.add_shapes(BOXES, shape_type="rectangle", name="examples", features=LABELS)
    target = viewer.add_labels(np.zeros(SHAPE, np.int32), name="target")
    widget = _widget(viewer, folder, shapes, target)
    widget.concept_text.value = "nucleus"
    before = _layers(viewer)

    held = _Held(tiny_concept_model, monkeypatch, "encode_text")
    _cancel_held(widget, held, qtbot)
    assert held.calls == {"encode_text": 1, "encode_image": 0, "decode": 0}
    assert _layers(viewer) == before
    assert widget.concept_text.value == "nucleus" and len(shapes.data) == 2  # kept for another try
