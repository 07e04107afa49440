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

    widget._skip_w.value = True
    assert widget.previous() is False  # 1 and 0 are done: nothing before to go to
    assert widget.series.current == images[2]
    widget._skip_w.value = False
    widget.previous()
    assert widget.series.current == images[1]
    assert (widget.labels_layer.data[0:3, 0:3] == 2).all()  # its labels, reopened
    assert widget._done_w.value is True
    widget._done_w.value = False  # not done after all
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
