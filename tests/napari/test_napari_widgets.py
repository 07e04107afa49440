"""The napari widgets in a real viewer (needs a display: run under ``xvfb-run -a``).

With a tiny random-weight SAM the masks are arbitrary, so most tests put a
fake predictor (masks = the boxes / discs around points) behind the widget to
check what the adapter does: which slice is written, ids, undo, errors,
cancel, live preview.  A few tests run the real tiny model end to end.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam_keras.runtime.backend import import_ml_stack

# TensorFlow and the OpenGL driver (Mesa) each carry an LLVM: TensorFlow imported after a
# canvas exists segfaults, and TensorFlow imported the usual way (RTLD_GLOBAL) before one
# makes the process abort at exit.  Import it the safe way now, at collection, before any
# test of the session loads a model or opens a viewer (see safe_import).
import_ml_stack()

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
INTERACTIVE = "Interactive segmentation"
AUTOMATIC = "Automatic segmentation"


@pytest.fixture(scope="session")
def sam_network(request):
    import_ml_stack()
    return request.getfixturevalue("tiny_network")


class FakeEncoder:
    """Stands in for the predictor's image encoder (``EmbeddingSource`` calls ``embed``)."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.network = predictor.network

    def embed(self, image_rgb):
        self.predictor.set_image(image_rgb)
        return self.predictor.embedding_state()


class FakePredictor:
    """Stands in for SAMPredictor: boxes give their rectangle, points a disc (r=4).

    ``set_image_calls`` counts the embeddings computed (through ``image_encoder`` too).
    """

    tiles = None  # SAMPredictor.tiles: the tiled image's embeddings, None when untiled

    def __init__(self, network):
        self.network = network
        self.image_encoder = FakeEncoder(self)
        self.set_image_calls = 0
        self.shape = None
        self._embedding = None
        self.block: threading.Event | None = None
        self.hold: threading.Event | None = None
        self.holding = threading.Event()
        self.mask_inputs: list = []

    def set_image(self, image, contrast_limits=None):
        from napari_sam_keras import ImageEmbedding

        if self.block is not None:
            self.block.wait(10)
        self.set_image_calls += 1
        self.shape = tuple(image.shape[:2])
        self._embedding = ImageEmbedding(
            features=np.zeros((1, 1, 1, 1), np.float32),
            original_size=self.shape,
            input_size=self.shape,
            model_key=self.network.key,
        )

    def set_embedding(self, embedding):
        self._embedding = embedding
        self.shape = tuple(embedding.original_size)

    def embedding_state(self):
        return self._embedding

    def _mask(self, point_coords=None, point_labels=None, box=None):
        mask = np.zeros(self.shape, bool)
        rr, cc = np.mgrid[: self.shape[0], : self.shape[1]]
        if box is not None:
            x0, y0, x1, y1 = np.round(box).astype(int)
            mask[y0 : y1 + 1, x0 : x1 + 1] = True
        if point_coords is not None:
            for (x, y), label in zip(point_coords, point_labels, strict=True):
                disc = (rr - y) ** 2 + (cc - x) ** 2 <= 16
                mask = mask | disc if label == 1 else mask & ~disc
        return mask

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        multimask_output=True,
        mask_input=None,
        **_,
    ):
        self.mask_inputs.append(mask_input)
        if self.hold is not None:  # a prediction that lasts until the test releases it
            self.holding.set()
            self.hold.wait(10)
        mask = self._mask(point_coords, point_labels, box)
        n = 3 if multimask_output else 1
        return np.stack([mask] * n), np.linspace(0.1, 0.9, n), None

    def predict_best(self, **kwargs):
        masks, scores, _ = self.predict(**kwargs)
        return masks[int(np.argmax(scores))], float(np.max(scores))

    def predict_batch(self, boxes=None, multimask_output=True, **_):
        masks = np.stack([self.predict(box=b, multimask_output=multimask_output)[0] for b in boxes])
        scores = np.tile(np.linspace(0.1, 0.9, masks.shape[1]), (len(boxes), 1))
        return masks, scores, None


@pytest.fixture
def make_widget(make_napari_viewer, sam_network, tiny_checkpoint):
    """make_widget(image, fake=True, **image_kwargs) -> (viewer, image layer, widget)."""

    def make(image, fake=True, name=INTERACTIVE, show=False, **kwargs):
        viewer = make_napari_viewer(show=show)
        layer = viewer.add_image(image, name="img", **kwargs)
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        widget.model.value = str(tiny_checkpoint)
        widget.model_store.add(str(tiny_checkpoint), sam_network)
        if fake and name == INTERACTIVE:
            widget.fake = FakePredictor(sam_network)
            widget._predictors[sam_network.key] = widget.fake
            widget.prefetch.enabled = lambda: False  # real neighbour embeddings: test_prefetch
        return viewer, layer, widget

    return make


def _key_callbacks(layer) -> dict:
    """The layer's key bindings as {"shift+c": callback}."""
    return {str(k).lower().replace("-", "+"): f for k, f in layer.keymap.items()}


def _layer_state(viewer):
    return [(layer.name, np.array(layer.data, copy=True)) for layer in viewer.layers]


def _same_layers(before, viewer):
    after = _layer_state(viewer)
    return len(before) == len(after) and all(
        a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(before, after, strict=True)
    )


# --- manifest --------------------------------------------------------------------------


def test_plugin_menu_has_both_widgets_and_sample_data(make_napari_viewer):
    viewer = make_napari_viewer()
    menu = viewer.window.plugins_menu
    submenus = {a.text(): a.menu() for a in menu.actions() if a.menu() is not None}
    assert "SAM Keras" in submenus  # the manifest's display_name
    titles = [a.text() for a in submenus["SAM Keras"].actions()]
    assert titles == [INTERACTIVE, AUTOMATIC, "Image series", "Fine-tune"]
    viewer.open_sample(PLUGIN, "cells_2d")
    viewer.open_sample(PLUGIN, "cells_3d")
    viewer.open_sample(PLUGIN, "cells_timelapse")
    assert [layer.data.ndim for layer in viewer.layers] == [2, 3, 3]


# --- interactive: structure with a fake predictor ----------------------------------------


def test_defaults_prompt_layers_and_point_types(make_widget):
    viewer, image, widget = make_widget(np.zeros((64, 64), np.uint16))
    assert widget.image.value is image
    points, shapes = widget.points.value, widget.shapes.value
    assert points.name == "SAM points" and shapes.name == "SAM boxes"
    assert widget.labels.value is None and widget["labels"] is widget.labels
    assert viewer.layers.selection.active is points and points.mode == "add"
    points.add([10, 10])
    assert widget.toggle_point_type() == "negative"
    points.add([20, 20])
    assert list(points.features["label"]) == ["positive", "negative"]
    assert not np.allclose(points.face_color[0], points.face_color[1])
    bound = _key_callbacks(points)
    assert {"t", "c", "shift+c"} <= set(bound), bound
    bound["t"](points)
    assert widget.point_type.value == "positive"


def test_point_run_writes_one_label_clears_prompts_and_undoes(make_widget):
    viewer, image, widget = make_widget(np.zeros((64, 80), np.uint16), scale=(0.5, 0.25))
    widget.points.value.add([30, 40])  # the points layer shares the image's scale
    labels = widget.run()
    assert labels is not None and labels is widget.labels.value
    assert labels.data.shape == (64, 80)
    np.testing.assert_allclose(labels.scale, image.scale)
    assert set(np.unique(labels.data)) == {0, 1}
    assert labels.data[30, 40] == 1 and labels.data[30, 45] == 0  # disc r=4 at (30, 40)
    assert len(widget.points.value.data) == 0
    labels.undo()
    assert not labels.data.any()


def test_two_boxes_two_labels_via_batch(make_widget):
    viewer, image, widget = make_widget(np.zeros((64, 64), np.uint16))
    widget.shapes.value.add_rectangles([[[5, 5], [20, 25]], [[40, 40], [60, 50]]])
    labels = widget.run()
    assert set(np.unique(labels.data)) == {0, 1, 2}
    assert (labels.data[5:21, 5:26] == 1).all() and (labels.data[40:61, 40:51] == 2).all()
    assert len(widget.shapes.value.data) == 0


def test_nd_uses_only_the_displayed_slice(make_widget):
    stack = np.zeros((5, 48, 48), np.uint16)
    viewer, image, widget = make_widget(stack, scale=(2.0, 1.0, 1.0))
    points = widget.points.value
    points.add([[3, 10, 10], [1, 30, 30]])  # data coordinates, as the image's
    viewer.dims.set_point(0, 6.0)  # world z 6 -> slice 3
    labels = widget.run()
    assert labels.data.shape == (5, 48, 48)
    assert labels.data[3, 10, 10] == 1
    assert not np.delete(labels.data, 3, axis=0).any()
    assert len(points.data) == 1 and points.data[0][0] == 1  # the other slice's point stays
    assert widget.fake.set_image_calls == 1
    assert widget.fake.shape == (48, 48)


def test_embedding_cache_makes_revisits_instant(make_widget):
    viewer, image, widget = make_widget(np.zeros((3, 32, 32), np.uint16))
    points = widget.points.value
    for z in (0, 1, 0):
        viewer.dims.set_point(0, z)
        points.add([z, 16, 16])
        assert widget.run() is not None
    assert widget.fake.set_image_calls == 2
    assert widget.embedding_cache.hits >= 1


def test_existing_labels_survive_and_overwrite_replaces(make_widget):
    viewer, image, widget = make_widget(np.zeros((40, 40), np.uint16))
    target = viewer.add_labels(np.zeros((40, 40), np.int32), name="mine")
    target.data[0:20, :] = 7
    widget.labels.value = target
    widget.shapes.value.add_rectangles([[[10, 10], [30, 30]]])
    assert widget.run() is target
    assert (target.data[0:20] == 7).all() and (target.data[20:31, 10:31] == 8).all()
    target.undo()
    widget.overwrite.value = True
    widget.shapes.value.add_rectangles([[[10, 10], [30, 30]]])
    widget.run()
    assert (target.data[10:31, 10:31] == 8).all() and (target.data[0:10] == 7).all()


@pytest.mark.parametrize(
    "case",
    ["no_image", "no_prompts", "outside", "channel_axis", "bad_model", "wrong_labels_shape"],
)
def test_user_errors_notify_once_and_change_no_layer(make_widget, errors, case, tmp_path):
    image = np.zeros((3, 32, 32, 2)) if case == "channel_axis" else np.zeros((32, 32))
    viewer, layer, widget = make_widget(image)
    if case == "no_image":
        viewer.layers.remove(layer)
    if case != "no_prompts":
        points = widget.points.value
        points.add([0] * (points.ndim - 2) + ([40, 5] if case == "outside" else [5, 5]))
    if case == "bad_model":
        widget.model.value = str(tmp_path / "missing.pth")
    if case == "wrong_labels_shape":
        widget.labels.value = viewer.add_labels(np.zeros((10, 10), np.int32))
    before = _layer_state(viewer)
    assert widget.run() is None
    assert len(errors) == 1, errors
    assert _same_layers(before, viewer)


def test_cancel_leaves_labels_unchanged(make_widget, qtbot):
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    target = viewer.add_labels(np.zeros((32, 32), np.int32))
    widget.labels.value = target
    widget.points.value.add([16, 16])
    widget.fake.block = threading.Event()
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.busy, timeout=5000)
    assert widget.cancel_button.enabled
    widget.cancel()
    widget.fake.block.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=10000)
    assert not target.data.any()
    assert len(widget.points.value.data) == 1  # prompts kept for another try


def test_run_button_segments_in_the_background(make_widget, qtbot):
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    widget.points.value.add([16, 16])
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.labels.value is not None and not widget.busy, timeout=10000)
    assert widget.labels.value.data[16, 16] == 1


def test_live_preview_follows_points_and_commit_writes(make_widget, qtbot):
    viewer, image, widget = make_widget(np.zeros((2, 40, 40), np.uint16))
    viewer.dims.set_point(0, 1)
    widget.live.value = True
    points = widget.points.value
    points.add([1, 10, 10])
    qtbot.waitUntil(
        lambda: widget.preview_layer is not None and widget.preview_layer.data.any(), timeout=10000
    )
    preview = widget.preview_layer
    first = preview.data.copy()
    assert first[1, 10, 10] and not first[0].any()
    assert widget.labels.value is None  # the preview is not the target
    points.add([1, 30, 30])
    qtbot.waitUntil(lambda: not widget.busy and preview.data[1, 30, 30] > 0, timeout=10000)
    assert preview.data[1, 10, 10] > 0
    labels = widget.commit()
    assert labels is not None and labels is not preview
    assert labels.data[1, 10, 10] == 1 and labels.data[1, 30, 30] == 1 and not labels.data[0].any()
    assert not preview.data.any() and len(points.data) == 0
    assert preview not in [widget.labels.value]


# --- real tiny model end to end ----------------------------------------------------------


def test_real_model_box_on_a_stack_slice(make_widget):
    from napari_sam_keras.sample_data import sample_stack

    viewer, image, widget = make_widget(sample_stack(), fake=False, scale=(3.0, 1.0, 1.0))
    viewer.dims.set_point(0, 3.0 * 8)
    widget.shapes.value.add_rectangles([[[8, 20, 20], [8, 20, 70], [8, 60, 70], [8, 60, 20]]])
    labels = widget.run()
    assert labels is not None
    assert labels.data[8].any() and not np.delete(labels.data, 8, axis=0).any()
    # the label as the prompt (mask input + box) through the real prompt path
    widget.refine_id.value = 1
    assert widget.refine() is labels, widget.status.details
    assert labels.data[8].any() and not np.delete(labels.data, 8, axis=0).any()
    labels.undo()
    labels.undo()
    assert not labels.data.any()


def test_automatic_widget_writes_one_label_per_mask_and_undoes(make_widget, errors):
    from napari_sam_keras.sample_data import sample_image

    viewer, image, widget = make_widget(sample_image((96, 96), n_cells=4), name=AUTOMATIC)
    target = viewer.add_labels(np.zeros((96, 96), np.int32))
    target.data[:8, :8] = 5
    widget.labels.value = target
    widget.points_per_side.value = 4
    widget.pred_iou_thresh.value = 0.0
    widget.stability_score_thresh.value = 0.0
    assert widget.run() is target, errors
    ids = set(np.unique(target.data)) - {0, 5}
    assert ids and min(ids) == 6 and (target.data[:8, :8] == 5).all()
    target.undo()
    assert set(np.unique(target.data)) == {0, 5}


def test_widgets_share_slice_embeddings(make_widget, sam_network, tiny_checkpoint):
    """An embedding the automatic widget computed serves the interactive widget's clicks
    (and the other way round): each slice is embedded once."""
    from napari_sam_keras.sample_data import sample_image

    viewer, image, auto = make_widget(sample_image((64, 64), n_cells=3), name=AUTOMATIC)
    auto.points_per_side.value = 2
    cache = auto.embedding_cache
    misses, hits = cache.misses, cache.hits
    auto.run()
    assert (cache.misses, cache.hits) == (misses + 1, hits)  # computed once, cached
    _dock, interactive = viewer.window.add_plugin_dock_widget(PLUGIN, INTERACTIVE)
    interactive.model.value = str(tiny_checkpoint)
    interactive.model_store.add(str(tiny_checkpoint), sam_network)
    assert interactive.embedding_cache is cache
    interactive.points.value.add([30, 30])
    assert interactive.run() is not None
    assert (cache.misses, cache.hits) == (misses + 1, hits + 1)  # reused, not recomputed
    auto.run()
    assert (cache.misses, cache.hits) == (misses + 1, hits + 2)


def test_automatic_every_slice_and_cancel(make_widget, monkeypatch, qtbot):
    import napari_sam_keras
    from napari_sam_keras.errors import OperationCancelled

    class FakeGenerator:
        def __init__(self, network, **options):
            self.options = options
            self.dropped = {}  # what the real generator counts per threshold

        def generate(self, image, progress=None, contrast_limits=None, embedding=None):
            progress(0, 2)
            mask = np.zeros(image.shape[:2], bool)
            mask[2:6, 2:6] = True
            progress(2, 2)
            return [{"segmentation": mask, "area": 16}]

    monkeypatch.setattr(napari_sam_keras, "SAMAutomaticMaskGenerator", FakeGenerator)
    viewer, image, widget = make_widget(np.zeros((3, 16, 16), np.uint16), name=AUTOMATIC)
    widget.all_slices.value = True
    widget.link_slices.value = False  # each slice its own objects (linking: on by default)
    labels = widget.run()
    assert [int(labels.data[z, 3, 3]) for z in range(3)] == [1, 2, 3]
    labels.undo()
    assert not labels.data.any()

    started = threading.Event()

    class SlowGenerator(FakeGenerator):
        def generate(self, image, progress=None, contrast_limits=None, embedding=None):
            started.set()
            for i in range(500):
                progress(i, 500)  # raises OperationCancelled once cancelled
                threading.Event().wait(0.01)
            raise AssertionError("not cancelled")

    monkeypatch.setattr(napari_sam_keras, "SAMAutomaticMaskGenerator", SlowGenerator)
    widget.run_button.native.click()
    assert started.wait(10)
    # the status names the step and counts the slices
    qtbot.waitUntil(lambda: "slice 1 of 3: generating masks" in widget.status.value, timeout=5000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=10000)
    assert widget.status.value.startswith("cancelled")
    assert not labels.data.any()
    assert OperationCancelled  # the job ended through the cancellation path


# --- usability (issue 16): clicks, errors, layers, models, prompts -----------------------


def _click(viewer, row: float, col: float) -> None:
    """A real left click on the canvas at data (row, col) of a 2D view, as Qt mouse events."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest

    native = viewer.window._qt_viewer.canvas.native
    center, zoom = np.asarray(viewer.camera.center)[-2:], viewer.camera.zoom
    x = (col - center[1]) * zoom + native.width() / 2
    y = (row - center[0]) * zoom + native.height() / 2
    where = QPoint(int(round(x)), int(round(y)))
    QTest.mouseMove(native, where)
    QTest.mousePress(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, where)
    QTest.mouseRelease(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, where)


def test_rapid_clicks_during_a_preview_keep_every_point(make_widget, errors, qtbot):
    viewer, image, widget = make_widget(np.zeros((64, 64), np.uint16), show=True)
    widget.live.value = True
    assert widget.wait(20)  # the embedding is prefetched when live mode is switched on
    widget.fake.hold = threading.Event()  # the first preview predicts until all clicks are in
    points = widget.points.value
    clicks = [(10, 10), (20, 40), (40, 20), (50, 50), (30, 30)]
    _click(viewer, *clicks[0])
    qtbot.waitUntil(widget.fake.holding.is_set, timeout=5000)
    for row, col in clicks[1:]:
        _click(viewer, row, col)
        qtbot.wait(20)
    assert widget.busy and len(points.data) == len(clicks)  # all in while predicting
    widget.fake.hold.set()
    assert widget.wait(30)
    assert len(points.data) == len(clicks)
    np.testing.assert_allclose(points.data, clicks, atol=1.0)
    preview = widget.preview_layer
    assert all(preview.data[r, c] > 0 for r, c in clicks)  # the preview of all points
    assert errors == [] and not widget.status.error_shown


def test_failure_stays_in_the_status_until_the_next_action(make_widget, errors, qtbot, tmp_path):
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    widget.model.value = str(tmp_path / "missing.pth")
    widget.points.value.add([16, 16])
    widget.run_button.native.click()
    assert widget.wait(20)
    qtbot.wait(100)  # later events must not wipe the message
    assert widget.status.error_shown and "missing.pth" in widget.status.value
    assert "missing.pth" in widget.status.details and len(errors) == 1
    widget.status.toggle_details()
    assert widget.status.details_open
    widget.clear_prompts()  # the next action
    assert not widget.status.error_shown and widget.status.details == ""


def test_new_image_does_not_cover_prompts_and_becomes_the_widgets_image(make_widget, qtbot):
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    stack = viewer.add_image(np.zeros((4, 32, 32), np.uint16), name="stack")
    assert viewer.layers.selection.active is stack
    qtbot.waitUntil(
        lambda: [layer.name for layer in viewer.layers][-2:] == ["SAM boxes", "SAM points"]
    )
    assert widget.image.value is stack
    assert widget.points.value.ndim == 3 and widget.shapes.value.ndim == 3  # made for the stack
    viewer.layers.selection.active = image
    assert widget.image.value is image


def test_automatic_widget_proposes_the_labels_layer_of_its_image(make_widget):
    viewer, image, auto = make_widget(np.zeros((32, 32), np.uint16), name=AUTOMATIC)
    assert auto.labels.value is None
    viewer.add_labels(np.zeros((8, 8), np.int32), name="other shape")
    assert auto.labels.value is None
    used = viewer.add_labels(np.zeros((32, 32), np.int32), name="img SAM labels")
    assert auto.labels.value is used
    _dock, second = viewer.window.add_plugin_dock_widget(PLUGIN, AUTOMATIC)
    assert second.labels.value is used


def test_a_folder_model_can_be_chosen(make_widget, sam_network, monkeypatch, tmp_path):
    from qtpy.QtWidgets import QFileDialog

    from napari_sam_keras.model.keras_files import save_preset
    from napari_sam_keras.napari_adapter.session.settings import recent_models

    folder = save_preset(sam_network, tmp_path / "my preset")
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a: str(folder))
    widget.model_picker.folder_button.native.click()
    assert widget.model.value == str(folder)
    # the weights file inside the folder means the folder, too
    weights = str(folder / "model.weights.h5")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a: (weights, ""))
    widget.model.value = "sam_base_sa1b"
    widget.model_picker.file_button.native.click()
    assert widget.model_picker.source() == str(folder)
    network = widget.model_store.get(widget.model_picker.source())  # loads the folder
    assert network.config == sam_network.config
    widget._predictors[network.key] = FakePredictor(network)
    widget.points.value.add([16, 16])
    assert widget.run() is not None
    assert recent_models()[0] == str(folder)  # remembered across sessions
    assert str(folder) in widget.model_picker.recent.choices


def test_a_zero_size_box_is_refused_with_a_message(make_widget, errors):
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    widget.shapes.value.add_rectangles([[[10, 10], [10, 10]]])
    before = _layer_state(viewer)
    assert widget.run() is None
    assert len(errors) == 1 and "no area" in errors[0]
    assert "no area" in widget.status.value
    assert _same_layers(before, viewer)


def test_clear_prompts_button_and_shift_c(make_widget):
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    points, shapes = widget.points.value, widget.shapes.value
    points.add([[5, 5], [9, 9]])
    shapes.add_rectangles([[[10, 10], [20, 20]]])
    widget.clear_button.native.click()
    assert len(points.data) == 0 and len(shapes.data) == 0
    points.add([5, 5])
    _key_callbacks(points)["shift+c"](points)
    assert len(points.data) == 0


def test_add_to_the_label_under_the_point_and_choose_the_id(make_widget):
    viewer, image, widget = make_widget(np.zeros((40, 40), np.uint16))
    mine = np.zeros((40, 40), np.int32)
    mine[10:20, 10:20] = 5
    target = viewer.add_labels(mine, name="mine")
    assert widget.labels.value is target  # proposed: the only labels layer of the image's shape
    assert widget.label_id.value == 6  # the next free id is shown
    widget.add_to_label.value = True
    widget.points.value.add([18, 18])  # disc r=4 reaches beyond label 5
    assert widget.run() is target
    assert target.data[21, 18] == 5 and set(np.unique(target.data)) == {0, 5}
    widget.add_to_label.value = False
    widget.label_id.value = 9
    widget.points.value.add([32, 32])
    widget.run()
    assert target.data[32, 32] == 9 and widget.label_id.value == 10


def test_a_labels_layer_as_prompt_refines_that_label_only(make_widget):
    viewer, image, widget = make_widget(np.zeros((40, 40), np.uint16))
    cells = viewer.add_labels(np.zeros((40, 40), np.int32), name="from cellpose")
    cells.data[5:25, 5:10] = 3  # an L-shaped label 3 ...
    cells.data[20:25, 5:25] = 3
    cells.data[5:15, 15:25] = 4  # ... and label 4 inside its bounding box
    before = cells.data.copy()
    widget.labels.value = cells
    cells.selected_label = 3
    assert widget.refine_id.value == 3  # follows the layer's selected label
    widget.point_type.value = "negative"
    widget.points.value.add([22, 7])  # cut a disc out of label 3
    assert widget.refine() is cells
    mask_input = widget.fake.mask_inputs[-1]
    assert mask_input is not None and mask_input.shape[-2:] == (64, 64)  # SAM's low-res grid
    # the fake's mask: label 3's box minus the negative disc
    rr, cc = np.mgrid[:40, :40]
    refined = (
        (rr >= 5) & (rr <= 24) & (cc >= 5) & (cc <= 24) & ((rr - 22) ** 2 + (cc - 7) ** 2 > 16)
    )
    assert (cells.data[refined & (before != 4)] == 3).all()
    assert (cells.data[~refined & (before == 3)] == 0).all()
    assert (cells.data[before == 4] == 4).all()  # other labels untouched
    assert len(widget.points.value.data) == 0
    cells.undo()
    np.testing.assert_array_equal(cells.data, before)


def test_the_preview_looks_different_from_the_labels(make_widget, qtbot):
    viewer, image, widget = make_widget(np.zeros((32, 32), np.uint16))
    widget.live.value = True
    widget.points.value.add([16, 16])
    assert widget.wait(20)
    preview = widget.preview_layer
    assert preview is not None and preview.data[16, 16] > 0
    assert "preview of 1 object" in widget.status.value
    calls = len(widget.fake.mask_inputs)
    widget.model_picker.set_source(widget.model.value)  # a model chosen: the preview again
    assert widget.wait(20) and len(widget.fake.mask_inputs) == calls + 1
    labels = widget.commit()
    assert labels is not None and labels.data[16, 16] == 1
    assert preview.contour > 0 and labels.contour == 0  # outlined, not filled
    one = np.array([1])
    assert not np.allclose(preview.colormap.map(one), labels.colormap.map(one))
    widget.points.value.add([6, 6])
    assert widget.commit() is None  # the preview is on its way: the commit follows it
    assert widget.wait(20) and labels.data[6, 6] == 2 and not preview.data.any()
