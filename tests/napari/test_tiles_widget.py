"""The tile shape / halo option of the interactive widget, in a real viewer (``xvfb-run -a``).

The demo model (``demo_nuclei``) segments a slice of the sample stack cut into
four tiles; the click is on a nucleus that a tile border crosses, and the label
written is checked against the sample's ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.processing.mask_prompts import interior_point, mask_iou
from napari_sam_keras.runtime.backend import import_ml_stack
from napari_sam_keras.sample_data import sample_stack

# TensorFlow must be imported the OpenGL-safe way before any viewer exists (see safe_import).
import_ml_stack()

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
INTERACTIVE = "Interactive segmentation"
DEMO = "demo_nuclei"
TILE = 128


@pytest.fixture(scope="module")
def demo_network():
    from napari_sam_keras import load_model

    return load_model(DEMO)


def cut_nucleus() -> tuple[np.ndarray, np.ndarray]:
    """A (256, 256) slice and the truth of a nucleus crossed by the tile border x = 128."""
    stack, labels = sample_stack(shape=(10, 256, 256), n_cells=6, seed=8, with_labels=True)
    for i in np.unique(labels[labels > 0]):
        truth = labels == i
        z = int(np.argmax(truth.sum(axis=(1, 2))))
        xs = np.nonzero(truth[z])[1]
        if xs.min() < TILE - 5 and xs.max() > TILE + 5:
            return stack[z], truth[z]
    raise AssertionError("no nucleus crosses the tile border")


def test_a_click_on_a_tiled_image_writes_the_full_resolution_object(
    make_napari_viewer, demo_network
):
    image, truth = cut_nucleus()
    viewer = make_napari_viewer(show=False)
    viewer.add_image(image, name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, INTERACTIVE)
    widget.model.value = DEMO
    widget.model_store.add(DEMO, demo_network)
    widget.embedding_cache.clear()  # shared by every widget: drop earlier tests' slices
    assert widget.controls.tiling.tiling() is None and not widget.halo.enabled  # off by default
    widget.tile_shape.value = TILE
    widget.halo.value = 64
    assert widget.halo.enabled and widget.controls.tiling.tiling() == (TILE, 64)
    x, y = interior_point(truth)
    widget.points.value.add([float(y), float(x)])

    labels = widget.run()

    assert labels is not None, widget.status.value
    assert labels.data.shape == image.shape
    got = labels.data == 1
    assert mask_iou(got, truth) >= 0.8
    # whole across the border, at full resolution
    assert got[:, : TILE - 5].any() and got[:, TILE + 5 :].any()
    assert np.count_nonzero(got ^ truth) < 0.2 * np.count_nonzero(truth)
    # the cache holds the tile used (keyed with its tiling), never an untiled embedding
    keys = list(widget.embedding_cache._items)
    assert keys and all(k[1:4] == ("tile", (TILE, TILE), (64, 64)) for k in keys)

    # the same click again: its tile comes from the cache, the label is the same
    labels.data = np.zeros_like(labels.data)
    widget.points.value.add([float(y), float(x)])
    predictor = next(iter(widget._predictors.values()))
    assert widget.run() is labels
    assert predictor.tiles.computed == 0
    assert np.array_equal(labels.data > 0, got)


def test_the_automatic_generator_on_tiles_finds_each_nucleus_once(make_napari_viewer, demo_network):
    stack, labels = sample_stack(shape=(10, 256, 256), n_cells=6, seed=8, with_labels=True)
    z = int(np.argmax([len(np.unique(s)) for s in labels]))  # the slice with most nuclei
    image, truth = stack[z], labels[z]
    viewer = make_napari_viewer(show=False)
    viewer.add_image(image, name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Automatic segmentation")
    widget.model.value = DEMO
    widget.model_store.add(DEMO, demo_network)
    widget.tile_shape.value = TILE
    widget.halo.value = 64
    # the tiny demo model predicts lower IoUs than SAM (as in tests/core/test_tiling.py)
    widget.points_per_side.value = 16
    widget.pred_iou_thresh.value = 0.7
    widget.stability_score_thresh.value = 0.8
    widget.min_mask_region_area.value = 20
    assert widget._prepare().tiling == (TILE, 64)

    written = widget.run()

    assert written is not None, widget.status.details
    got = np.asarray(written.data)
    assert got.shape == image.shape
    found = {}
    for i in (i for i in np.unique(truth) if i and np.count_nonzero(truth == i) > 200):
        blob = truth == i
        ids, counts = np.unique(got[blob & (got > 0)], return_counts=True)
        assert len(ids), f"nucleus {i} not found"
        best = int(ids[np.argmax(counts)])
        assert mask_iou(got == best, blob) >= 0.7, i
        found[i] = best
    assert len(set(found.values())) == len(found)  # one label per nucleus: no duplicates
    crossing = [
        i for i in found if (truth == i)[:, : TILE - 5].any() and (truth == i)[:, TILE + 5 :].any()
    ]
    assert crossing  # the border case is part of the test
