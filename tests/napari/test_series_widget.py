"""The "Image series" widget in a real viewer (run under ``xvfb-run -a``): Next saves the
labels and moves on, reopening resumes at the same image, a revisited image keeps its
labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from helpers import write_cell_images

from napari_sam_keras.files.image_series import ImageSeries
from napari_sam_keras.napari_adapter.session.layer_stores import store_base

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
SERIES = "Image series"


def press(viewer, key: str) -> None:
    """Run the viewer's key binding of ``key`` as a key press on the canvas does."""
    from napari.utils.key_bindings import KeyBinding

    viewer.keymap[KeyBinding.from_str(key)](viewer)


def paint(layer, region, value: int) -> None:
    data = np.array(layer.data)
    data[region] = value
    layer.data = data


def open_series(make_napari_viewer, folder):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, SERIES)
    widget.open(folder)
    return viewer, widget


def test_next_saves_and_moves_on_and_a_revisited_image_keeps_its_labels(
    make_napari_viewer, tmp_path
):
    images = write_cell_images(tmp_path / "plate", 3)
    viewer, widget = open_series(make_napari_viewer, images[0].parent)
    np.testing.assert_array_equal(widget.image_layer.data, tifffile.imread(images[0]))
    assert not widget.labels_layer.data.any()
    assert widget.labels_layer.data.shape == (48, 64)

    paint(widget.labels_layer, np.s_[5:10, 5:12], 3)
    widget.next_button.native.click()  # a real click on the button
    saved = tmp_path / "plate" / "sam-labels" / "cells_00-labels.tif"
    first = np.zeros((48, 64), np.uint8)
    first[5:10, 5:12] = 3
    np.testing.assert_array_equal(tifffile.imread(saved), first)
    np.testing.assert_array_equal(widget.image_layer.data, tifffile.imread(images[1]))
    assert not widget.labels_layer.data.any()
    state = json.loads((tmp_path / "plate" / "sam-labels" / "series.json").read_text())
    assert state == {"current": "cells_01.tif", "done": ["cells_00.tif"]}
    assert [layer.name for layer in viewer.layers] == ["cells_01.tif", "cells_01 labels"]

    paint(widget.labels_layer, np.s_[20:30, 40:50], 7)
    press(viewer, "PageUp")  # previous: saves this one, goes back
    np.testing.assert_array_equal(widget.image_layer.data, tifffile.imread(images[0]))
    np.testing.assert_array_equal(widget.labels_layer.data, first)  # nothing lost
    second = tifffile.imread(tmp_path / "plate" / "sam-labels" / "cells_01-labels.tif")
    assert set(np.unique(second)) == {0, 7} and (second == 7).sum() == 100

    # edit the revisited image again, move on with the key: both edits are kept
    paint(widget.labels_layer, np.s_[30:32, 0:4], 4)
    press(viewer, "PageDown")
    first[30:32, 0:4] = 4
    np.testing.assert_array_equal(tifffile.imread(saved), first)
    np.testing.assert_array_equal(widget.labels_layer.data, second)


def test_reopening_resumes_at_the_same_image_and_done_images_can_be_skipped(
    make_napari_viewer, tmp_path
):
    images = write_cell_images(tmp_path / "plate", 4)
    folder = images[0].parent
    viewer, widget = open_series(make_napari_viewer, folder)
    widget.next()  # 0 done
    paint(widget.labels_layer, np.s_[0:3, 0:3], 2)
    widget.next()  # 1 done, now at 2
    viewer.close()

    viewer, widget = open_series(make_napari_viewer, folder)  # a new napari session
    assert widget.series.current == images[2]
    np.testing.assert_array_equal(widget.image_layer.data, tifffile.imread(images[2]))
    assert widget.series.done == {"cells_00.tif", "cells_01.tif"}

    widget.controls.skip_done.value = True
    assert widget.previous() is False  # 1 and 0 are done: nothing before to go to
    assert widget.series.current == images[2]
    widget.controls.skip_done.value = False
    widget.previous()
    assert widget.series.current == images[1]
    assert (widget.labels_layer.data[0:3, 0:3] == 2).all()  # its labels, reopened
    assert widget.controls.done.value is True
    widget.controls.done.value = False  # not done after all
    assert ImageSeries(folder).done == {"cells_00.tif"}


def test_labels_of_a_batch_run_open_as_the_starting_point(make_napari_viewer, tmp_path):
    """``batch FOLDER --out FOLDER/sam-labels`` outputs are what the series opens."""
    from napari_sam_keras.files.batch_files import write_label_output

    images = write_cell_images(tmp_path / "plate", 2)
    start = np.zeros((48, 64), np.int64)
    start[10:20, 10:20] = 300  # more labels than uint8 holds
    (tmp_path / "plate" / "sam-labels").mkdir()
    write_label_output(tmp_path / "plate" / "sam-labels" / "cells_00-labels.tif", start, {})
    _viewer, widget = open_series(make_napari_viewer, images[0].parent)
    np.testing.assert_array_equal(widget.labels_layer.data, start)
    assert widget.labels_layer.data.dtype == np.int32  # room for new ids while painting


def test_the_plugin_menu_lists_the_series_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    menu = viewer.window.plugins_menu
    submenus = {a.text(): a.menu() for a in menu.actions() if a.menu() is not None}
    assert SERIES in [a.text() for a in submenus["SAM Keras"].actions()]


@pytest.fixture
def _fresh_models_and_settings(session):
    """No model loaded by an earlier test, no embeddings folder from the user's settings
    (the conftest's fresh session, with its settings in a temporary folder)."""
    assert session.models.last_source is None and session.stores.current_folder() is None
    return session


def count_encoder_runs(monkeypatch) -> list[tuple[int, int]]:
    """Every run of the image encoder (any thread), as the embedded image's size."""
    from napari_sam_keras.model.image_encoder import ImageEncoder

    runs: list[tuple[int, int]] = []
    embed_resized = ImageEncoder.embed_resized

    def counted(self, resized_rgb, original_size):
        runs.append(tuple(original_size))
        return embed_resized(self, resized_rgb, original_size)

    monkeypatch.setattr(ImageEncoder, "embed_resized", counted)
    return runs


@pytest.mark.parametrize("with_folder", [False, True], ids=["memory", "embeddings-folder"])
def test_the_next_image_is_embedded_in_the_background_and_next_computes_nothing(
    make_napari_viewer,
    tmp_path,
    tiny_checkpoint,
    tiny_network,
    qtbot,
    monkeypatch,
    _fresh_models_and_settings,
    with_folder,
):
    from napari_sam_keras import EmbeddingStore, SAMPredictor
    from napari_sam_keras.napari_adapter.jobs.slice_embedding import embedding_key
    from napari_sam_keras.napari_adapter.layers.image_slices import current_slice

    folder = tmp_path / "embeddings"
    if with_folder:
        _fresh_models_and_settings.stores.set_folder(str(folder))
    runs = count_encoder_runs(monkeypatch)
    images = write_cell_images(tmp_path / "plate", 3)
    viewer, widget = open_series(make_napari_viewer, images[0].parent)
    qtbot.wait(50)
    assert not widget.prefetch.busy and widget.prefetch.ready is None  # no model: no work

    # the user loads a model in the interactive widget: image 1 is embedded meanwhile
    _dock, interactive = viewer.window.add_plugin_dock_widget(PLUGIN, "Interactive segmentation")
    interactive.model.value = str(tiny_checkpoint)
    interactive.model_store.add(str(tiny_checkpoint), tiny_network)
    qtbot.waitUntil(lambda: widget.prefetch.ready is not None, timeout=60000)
    assert widget.prefetch.ready.file[0] == str(images[1].resolve())
    assert runs == [(48, 64)]  # image 1, in the background; image 0 was never embedded
    if with_folder:  # in the store the layer of cells_01.tif will use
        store = folder / (store_base("cells_01.tif", tiny_network.key) + ".zarr")
        assert EmbeddingStore(store).is_complete(0, 0)

    widget.next()
    np.testing.assert_array_equal(widget.image_layer.data, tifffile.imread(images[1]))
    shown = current_slice(widget.image_layer, viewer.dims)
    key = embedding_key(shown, tiny_network.key)
    assert key in interactive.embedding_cache
    # image 2 is prepared next; wait for it so that it is not counted below
    qtbot.waitUntil(
        lambda: (
            widget.prefetch.ready is not None
            and widget.prefetch.ready.file[0] == str(images[2].resolve())
        ),
        timeout=60000,
    )
    assert len(runs) == 2

    # a click on image 1 in the interactive widget: no embedding is computed
    interactive.image.value = widget.image_layer
    interactive.points.value.add([20, 20])
    assert interactive.run() is not None, interactive.status.details
    assert len(runs) == 2
    # and the embedding it used is the encoder's own for that layer's slice
    fresh = SAMPredictor(tiny_network, warm_up=False)
    fresh.set_image(shown.data, contrast_limits=shown.contrast_limits)
    np.testing.assert_allclose(
        interactive.embedding_cache.get(key).features,
        fresh.embedding_state().features,
        rtol=1e-5,
        atol=1e-5,
    )


def test_a_changed_contrast_or_folder_leaves_the_prepared_embedding_unused(
    make_napari_viewer, tmp_path, tiny_checkpoint, tiny_network, qtbot, _fresh_models_and_settings
):
    from napari_sam_keras.napari_adapter.jobs.slice_embedding import embedding_key
    from napari_sam_keras.napari_adapter.layers.image_slices import current_slice

    images = write_cell_images(tmp_path / "plate", 2)
    viewer = make_napari_viewer()
    _dock, interactive = viewer.window.add_plugin_dock_widget(PLUGIN, "Interactive segmentation")
    interactive.model.value = str(tiny_checkpoint)
    interactive.model_store.add(str(tiny_checkpoint), tiny_network)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, SERIES)
    widget.open(images[0].parent)
    qtbot.waitUntil(lambda: widget.prefetch.ready is not None, timeout=60000)

    # the prepared slice is not what the new layer shows: nothing is put in the cache
    ready = widget.prefetch.ready
    layer = viewer.add_image(ready.data, contrast_limits=(0, 1000), name="other contrast")
    assert widget.prefetch.adopt(layer, viewer.dims) is False
    shown = current_slice(layer, viewer.dims)
    assert embedding_key(shown, tiny_network.key) not in interactive.embedding_cache

    # another folder: what was prepared for the first one is dropped
    qtbot.waitUntil(lambda: not widget.prefetch.busy, timeout=60000)
    other = write_cell_images(tmp_path / "other", 1)
    widget.open(other[0].parent)
    assert widget.prefetch.ready is None and not widget.prefetch.busy  # one image: no next


def test_a_click_goes_before_the_next_image(
    make_napari_viewer,
    tmp_path,
    tiny_checkpoint,
    tiny_network,
    qtbot,
    monkeypatch,
    _fresh_models_and_settings,
):
    """The prefetch starts while a click's job runs: it waits, and embeds after it."""
    import threading
    import time

    from napari_sam_keras.model.image_encoder import ImageEncoder
    from napari_sam_keras.napari_adapter.jobs import prompt_job

    events: list[tuple] = []
    gate = threading.Event()
    embed_resized = ImageEncoder.embed_resized

    def recorded(self, resized_rgb, original_size):
        events.append(("encoder", threading.current_thread().name))
        return embed_resized(self, resized_rgb, original_size)

    call = prompt_job.PromptJob.__call__

    def held_click(self, *args):  # the real click job, held until the test lets it go
        events.append(("click start",))
        gate.wait(30)
        result = call(self, *args)
        events.append(("click end",))
        return result

    monkeypatch.setattr(ImageEncoder, "embed_resized", recorded)
    monkeypatch.setattr(prompt_job.PromptJob, "__call__", held_click)

    images = write_cell_images(tmp_path / "plate", 2)
    viewer, widget = open_series(make_napari_viewer, images[0].parent)
    _dock, interactive = viewer.window.add_plugin_dock_widget(PLUGIN, "Interactive segmentation")
    interactive.model.value = str(tiny_checkpoint)
    interactive.image.value = widget.image_layer
    interactive.points.value.add([20, 20])
    interactive.run_button.native.click()
    qtbot.waitUntil(lambda: ("click start",) in events, timeout=10000)
    interactive.model_store.add(str(tiny_checkpoint), tiny_network)  # a model is there now
    qtbot.waitUntil(lambda: widget.prefetch.busy, timeout=10000)
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        qtbot.wait(20)
    assert events == [("click start",)]  # the prefetch waits for the click
    gate.set()
    qtbot.waitUntil(lambda: widget.prefetch.ready is not None, timeout=60000)
    qtbot.waitUntil(lambda: interactive.runner.idle, timeout=10000)
    assert [e[0] for e in events] == ["click start", "encoder", "click end", "encoder"], events
    assert events[3][1].startswith("napari-sam-keras: SAM: embedding the next image")
    assert not events[1][1].startswith("napari-sam-keras")  # the click's, in Qt's pool


def test_labels_drawn_after_the_last_save_survive_closing_the_viewer(
    make_napari_viewer, tmp_path, monkeypatch
):
    """Issue 24 item 4: autosave on close; the folder is proposed again next time."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    images = write_cell_images(tmp_path / "plate", 2)
    viewer, widget = open_series(make_napari_viewer, images[0].parent)
    widget.next()
    assert not widget.unsaved
    paint(widget.labels_layer, np.s_[1:4, 2:6], 5)  # after the last "Save and next"
    assert widget.unsaved
    viewer.close()
    saved = tifffile.imread(tmp_path / "plate" / "sam-labels" / "cells_01-labels.tif")
    assert (saved == 5).sum() == 12

    viewer = make_napari_viewer()
    _dock, again = viewer.window.add_plugin_dock_widget(PLUGIN, SERIES)
    assert str(again.folder.value) == str((tmp_path / "plate").resolve())
