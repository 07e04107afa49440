"""Segment in 3D in the interactive widget, in a real viewer (run under ``xvfb-run -a``).

The demo model (``demo_nuclei``, trained on synthetic nuclei like the samples)
does the segmentation, so what is written is checked against the samples'
ground truth, not against numbers of another implementation.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import ndimage

from napari_sam_keras.processing.mask_prompts import interior_point, mask_iou
from napari_sam_keras.runtime.backend import import_ml_stack
from napari_sam_keras.sample_data import sample_stack, sample_timelapse

# TensorFlow must be imported the OpenGL-safe way before any viewer exists (see safe_import).
import_ml_stack()

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
INTERACTIVE = "Interactive segmentation"
DEMO = "demo_nuclei"


@pytest.fixture(scope="module")
def demo_network():
    from napari_sam_keras import load_model

    return load_model(DEMO)


@pytest.fixture(scope="module")
def stack():
    """The 3D sample (16, 128, 128) and its ground truth (one id per ellipsoid)."""
    return sample_stack(with_labels=True)


@pytest.fixture
def make_widget(make_napari_viewer, demo_network):
    """make_widget(image, **image_kwargs) -> (viewer, image layer, widget), demo model loaded."""

    def make(image, **kwargs):
        viewer = make_napari_viewer(show=False)
        layer = viewer.add_image(image, name="img", **kwargs)
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, INTERACTIVE)
        widget.model.value = DEMO
        widget.model_store.add(DEMO, demo_network)
        return viewer, layer, widget

    return make


def isolated(labels: np.ndarray) -> list[int]:
    """Ids of the ellipsoids touching no other one (within 1 slice and 2 pixels)."""
    near = np.ones((3, 5, 5), bool)
    return [
        int(i)
        for i in np.unique(labels[labels > 0])
        if not (ndimage.binary_dilation(labels == i, near) & (labels > 0) & (labels != i)).any()
    ]


def click_on(truth: np.ndarray) -> tuple[int, float, float]:
    """(z, row, column) in the middle of the object's widest slice."""
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    x, y = interior_point(truth[z])
    return z, float(y), float(x)


def show_slice(viewer, axis: int, position: int) -> None:
    """Move the slider of world ``axis`` to data ``position`` as a user would (it is now used)."""
    step = list(viewer.dims.current_step)
    step[axis] = position
    viewer.dims.current_step = tuple(step)
    viewer.dims.last_used = axis


def key_callbacks(layer) -> dict:
    return {str(k).lower().replace("-", "+"): f for k, f in layer.keymap.items()}


def layer_state(viewer):
    return [(layer.name, np.array(layer.data, copy=True)) for layer in viewer.layers]


def same_layers(before, viewer) -> bool:
    after = layer_state(viewer)
    return len(before) == len(after) and all(
        a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(before, after, strict=True)
    )


def test_one_click_gives_one_label_on_the_objects_slices_and_one_undo(make_widget, stack):
    image, truth_labels = stack
    viewer, layer, widget = make_widget(image, scale=(3, 1, 1))
    nucleus = isolated(truth_labels)[0]
    truth = truth_labels == nucleus
    z, row, col = click_on(truth)
    show_slice(viewer, 0, z)
    widget.points.value.add([z, row, col])
    misses = widget.embedding_cache.misses

    labels = widget.segment_3d()

    assert labels is not None, widget.status.value
    assert np.unique(labels.data).tolist() == [0, 1]  # one object, one id
    got = labels.data == 1
    assert mask_iou(got, truth) >= 0.8
    low, high = np.flatnonzero(truth.any(axis=(1, 2)))[[0, -1]]
    reached = np.flatnonzero(got.any(axis=(1, 2)))
    assert len(reached) >= 3 and low <= reached.min() and reached.max() <= high
    assert "wrote label 1" in widget.status.value and "slice(s) of axis 0" in widget.status.value
    assert len(widget.points.value.data) == 0  # the prompt used is removed
    embedded = widget.embedding_cache.misses - misses
    assert embedded >= len(reached)

    labels.undo()  # one step back restores the layer
    assert not labels.data.any()

    # the same object again: every slice it visits is embedded already
    widget.points.value.add([z, row, col])
    assert widget.segment_3d() is labels
    assert widget.embedding_cache.misses - misses == embedded
    assert np.array_equal(labels.data == 1, got)


def test_existing_labels_survive_and_prompts_on_two_slices(make_widget, stack):
    image, truth_labels = stack
    viewer, layer, widget = make_widget(image)
    truth = truth_labels == isolated(truth_labels)[1]
    z, row, col = click_on(truth)
    mine = np.zeros(image.shape, np.int32)
    mine[z, : int(row)] = 9  # the upper half of the object's widest slice is labelled already
    target = viewer.add_labels(mine.copy(), name="mine")
    widget.labels.value = target
    reached = np.flatnonzero(truth.any(axis=(1, 2)))
    other = int(reached[-2])  # a second click two slices away from the end
    show_slice(viewer, 0, z)
    widget.points.value.add([[z, row, col], [other, *click_on(truth[other : other + 1])[1:]]])

    assert widget.segment_3d() is target
    assert (target.data[mine == 9] == 9).all()  # never overwritten
    new = target.data == 10
    assert np.unique(target.data).tolist() == [0, 9, 10]
    assert new[other].any() and new[z].any() and not new[z, : int(row)].any()
    assert mask_iou(new | (mine == 9) & truth, truth) >= 0.8


def test_cancel_mid_run_changes_nothing_and_the_viewer_stays_usable(
    make_widget, stack, monkeypatch, qtbot
):
    import napari_sam_keras

    image, truth_labels = stack
    viewer, layer, widget = make_widget(image)
    truth = truth_labels == isolated(truth_labels)[0]
    z, row, col = click_on(truth)
    target = viewer.add_labels(np.zeros(image.shape, np.int32), name="target")
    widget.labels.value = target
    show_slice(viewer, 0, z)
    points = widget.points.value
    points.add([z, row, col])

    # the real propagation, held after its third slice until the test has cancelled it
    real = napari_sam_keras.segment_volume
    reached, release = threading.Event(), threading.Event()

    def held(*args, progress, **kwargs):
        def report(done, total):
            progress(done, total)
            if done == 3:
                reached.set()
                release.wait(20)

        return real(*args, progress=report, **kwargs)

    monkeypatch.setattr(napari_sam_keras, "segment_volume", held)
    key_callbacks(points)["shift+s"](points)  # Shift+S on the points layer
    assert reached.wait(60)
    qtbot.waitUntil(lambda: "slice 4 of 16" in widget.status.value, timeout=5000)
    assert widget.busy and widget.cancel_button.enabled
    show_slice(viewer, 0, z - 1)  # the viewer still answers while SAM works
    assert viewer.dims.current_step[0] == z - 1
    widget.cancel()
    release.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=20000)
    assert widget.status.value.startswith("cancelled")
    assert not target.data.any()
    assert len(points.data) == 1  # the prompt is kept for another try


@pytest.mark.parametrize("case", ["3d_view", "no_prompts", "2d_image", "only_a_stop_marker"])
def test_bad_input_gives_one_clear_message_and_changes_no_layer(make_widget, errors, case):
    image = np.zeros((32, 32), np.uint16) if case == "2d_image" else np.zeros((4, 32, 32))
    viewer, layer, widget = make_widget(image)
    points = widget.points.value
    if case == "only_a_stop_marker":
        widget.point_type.value = "negative"
    if case != "no_prompts":
        points.add([0] * (points.ndim - 2) + [10, 10])
    if case == "3d_view":
        viewer.dims.ndisplay = 3
    before = layer_state(viewer)
    assert widget.segment_3d() is None
    assert len(errors) == 1, errors
    expected = {
        "3d_view": "works from the 2D view",
        "no_prompts": "No prompts on any slice",
        "2d_image": "needs a stack",
        "only_a_stop_marker": "Only stop markers",
    }[case]
    assert expected in errors[0] and expected in widget.status.details
    assert same_layers(before, viewer)


def test_a_time_axis_tracks_forward(make_widget):
    frames, truth_labels = sample_timelapse(shape=(8, 192, 192), with_labels=True)
    viewer, layer, widget = make_widget(frames)
    viewer.dims.axis_labels = ("t", "y", "x")
    truth = truth_labels == 1
    assert truth.any(axis=(1, 2)).all()
    show_slice(viewer, 0, 3)
    _, row, col = click_on(truth[3:4])
    widget.points.value.add([3, row, col])

    labels = widget.segment_3d()

    assert labels is not None, widget.status.value
    assert "frame(s) of t" in widget.status.value
    got = labels.data == 1
    assert not got[:3].any()  # forward in time only: nothing before the prompted frame
    for t in range(3, 8):
        assert mask_iou(got[t], truth[t]) >= 0.7, t


def test_a_4d_layer_follows_the_slider_in_use(make_widget, stack):
    image, truth_labels = stack
    truth = truth_labels == isolated(truth_labels)[0]
    z, row, col = click_on(truth)
    hyper = np.stack([image, image])  # (t, z, y, x): the same stack at two times
    viewer, layer, widget = make_widget(hyper)
    show_slice(viewer, 0, 1)
    show_slice(viewer, 1, z)  # the z slider is the one in use
    widget.points.value.add([1, z, row, col])

    labels = widget.segment_3d()

    assert labels is not None, widget.status.value
    assert not labels.data[0].any()  # t = 0 untouched: the current t is fixed
    assert mask_iou(labels.data[1] == 1, truth) >= 0.8
    labels.undo()

    widget.axis_is_time.value = True  # track along t from t = 1 (a time axis chosen in the widget)
    show_slice(viewer, 0, 1)
    widget.points.value.add([1, z, row, col])
    assert widget.segment_3d() is labels
    written = np.argwhere(labels.data == 1)
    assert set(written[:, 1].tolist()) == {z}  # one z slice, the current one
    assert set(written[:, 0].tolist()) == {1}  # tracked forward from t = 1: the last frame
    assert "frame(s) of axis 0" in widget.status.value


def test_offline_the_widget_proposes_the_demo_model_and_says_what_it_is(
    make_napari_viewer, tmp_path, monkeypatch, session
):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "no-weights"))
    monkeypatch.delenv("NAPARI_SAM_KERAS_MODEL", raising=False)
    assert session.models.last_source is None  # no model loaded this session
    viewer = make_napari_viewer(show=False)
    viewer.add_image(np.zeros((8, 32, 32), np.uint16))
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, INTERACTIVE)
    assert widget.model.value == DEMO
    note = widget.model_picker.note
    assert "demo_nuclei" in note and "synthetic" in note
    assert note.split(": ")[0] in widget.status.value  # the status line: its first words
    assert note in widget.model.native.toolTip()
