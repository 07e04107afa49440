"""Neighbour-slice prefetch and the embeddings folder (issue 11, napari part).

Run under ``xvfb-run -a``.  The tiny random-weight SAM does the real work
(embeddings, prompt path); the ordering test only holds the prefetch's first
slice and the click's job at chosen moments (each then runs for real), so
that "a click during prefetch" happens deterministically.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from napari_sam_keras.napari_adapter.session.layer_stores import store_base
from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # before any viewer exists (see test_napari_widgets)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
INTERACTIVE = "Interactive segmentation"
AUTOMATIC = "Automatic segmentation"


@pytest.fixture
def interactive(make_napari_viewer, tiny_checkpoint, tiny_network, qtbot):
    made = []

    def make(image, name="img"):
        viewer = make_napari_viewer()
        layer = viewer.add_image(image, name=name)
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, INTERACTIVE)
        widget.model.value = str(tiny_checkpoint)
        widget.model_store.add(str(tiny_checkpoint), tiny_network)
        made.append(widget)
        return viewer, layer, widget

    yield make
    for widget in made:  # no prefetch outlives its viewer
        widget.prefetch.cancel()
        qtbot.waitUntil(lambda w=widget: not w.prefetch.busy, timeout=30000)


def _stack(seed: int = 0) -> np.ndarray:
    from napari_sam_keras.sample_data import sample_image

    return np.stack([sample_image((64, 64), n_cells=3, seed=seed + z) for z in range(5)])


def _cached(widget, layer, z: int, network) -> bool:
    from napari_sam_keras.napari_adapter.jobs.slice_embedding import embedding_key
    from napari_sam_keras.napari_adapter.layers.image_slices import make_slice

    image_slice = make_slice(layer, (z, None, None), (1, 2))
    return embedding_key(image_slice, network.key) in widget.embedding_cache


def test_after_an_embedding_the_neighbours_become_cached(interactive, tiny_network, qtbot):
    viewer, layer, widget = interactive(_stack())
    widget.embedding_cache.clear()
    viewer.dims.set_point(0, 2)
    widget.points.value.add([2, 30, 30])
    assert widget.run() is not None, widget.status.details
    assert _cached(widget, layer, 2, tiny_network)
    # no click: slices 1 and 3 are embedded in the background
    qtbot.waitUntil(
        lambda: _cached(widget, layer, 1, tiny_network) and _cached(widget, layer, 3, tiny_network),
        timeout=30000,
    )
    qtbot.waitUntil(lambda: not widget.prefetch.busy, timeout=30000)
    assert not _cached(widget, layer, 0, tiny_network)
    assert not _cached(widget, layer, 4, tiny_network)


def test_a_click_during_prefetch_is_answered_first(interactive, tiny_network, qtbot, monkeypatch):
    from napari_sam_keras.napari_adapter.background import prefetch
    from napari_sam_keras.napari_adapter.jobs import prompt_job

    events: list[tuple] = []
    prefetch_gate, click_gate = threading.Event(), threading.Event()
    hold_click = threading.Event()
    embed_slice = prefetch.embed_slice

    def gated_embed(predictor, image_slice, session):  # the real prefetch, held at slice 1
        z = image_slice.plane[0]
        events.append(("prefetch start", z))
        if z == 1:
            prefetch_gate.wait(20)
        computed = embed_slice(predictor, image_slice, session)
        events.append(("prefetch end", z))
        return computed

    call = prompt_job.PromptJob.__call__

    def held_click(self, *args):  # the real click job, held while the test checks
        if hold_click.is_set():
            events.append(("click start",))
            click_gate.wait(20)
        result = call(self, *args)
        if hold_click.is_set():
            events.append(("click end",))
        return result

    monkeypatch.setattr(prefetch, "embed_slice", gated_embed)
    monkeypatch.setattr(prompt_job.PromptJob, "__call__", held_click)

    viewer, layer, widget = interactive(_stack(seed=10))
    widget.embedding_cache.clear()
    viewer.dims.set_point(0, 2)
    widget.points.value.add([2, 20, 20])
    labels = widget.run()
    assert labels is not None, widget.status.details
    qtbot.waitUntil(lambda: ("prefetch start", 1) in events, timeout=30000)

    # a click while the prefetch is busy with slice 1
    hold_click.set()
    widget.points.value.add([2, 45, 45])
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: ("click start",) in events, timeout=10000)
    prefetch_gate.set()
    qtbot.waitUntil(lambda: ("prefetch end", 1) in events, timeout=30000)
    # slice 1 is done, the click still runs: the prefetch waits for it
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        qtbot.wait(20)
    assert ("prefetch start", 3) not in events, events
    click_gate.set()
    qtbot.waitUntil(lambda: ("prefetch end", 3) in events, timeout=30000)
    assert events.index(("click end",)) < events.index(("prefetch start", 3)), events
    qtbot.waitUntil(lambda: widget.runner.idle, timeout=10000)
    assert len(set(np.unique(labels.data[2])) - {0}) == 2  # both clicks were written


def test_the_embeddings_folder_is_shared_remembered_and_never_overwritten(
    interactive, tiny_network, tiny_checkpoint, tmp_path, qtbot, monkeypatch, session
):
    from napari_sam_keras import EmbeddingStore
    from napari_sam_keras.model.image_encoder import ImageEncoder
    from napari_sam_keras.napari_adapter.session import settings

    folder = tmp_path / "embeddings"
    viewer, layer, widget = interactive(_stack(seed=20))
    _dock, auto = viewer.window.add_plugin_dock_widget(PLUGIN, AUTOMATIC)
    widget.embeddings_picker.set_folder(str(folder))
    # both widgets show it, and the next session finds it
    assert auto.embeddings_folder.value == str(folder) == settings.embeddings_folder()

    widget.embedding_cache.clear()
    viewer.dims.set_point(0, 2)
    widget.points.value.add([2, 30, 30])
    assert widget.run() is not None, widget.status.details
    qtbot.waitUntil(lambda: not widget.prefetch.busy, timeout=30000)
    stores = sorted(folder.glob("*.zarr"))
    assert [p.name for p in stores] == [store_base("img", tiny_network.key) + ".zarr"]
    assert ":" not in stores[0].name  # valid on Windows too
    store = EmbeddingStore(stores[0])
    assert [store.is_complete(z, 0) for z in range(5)] == [False, True, True, True, False]

    # a new session (nothing in memory): slice 2 comes from the store, no encoder runs
    widget.embedding_cache.clear()
    session.stores.forget_stores()

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although the embedding is stored")

    with monkeypatch.context() as patch:
        patch.setattr(ImageEncoder, "embed", no_encoder)
        patch.setattr(ImageEncoder, "embed_resized", no_encoder)
        widget.prefetch.enabled = lambda: False
        widget.points.value.add([2, 40, 40])
        assert widget.run() is not None, widget.status.details
    widget.prefetch.enabled = lambda: True

    # other data under the same layer name: a new store, the old one untouched
    before = (stores[0] / "zarr.json").read_bytes()
    viewer.layers.remove(layer)
    other = viewer.add_image(_stack(seed=30), name="img")
    widget.image.value = other
    widget.embedding_cache.clear()
    widget.points.value.add([2, 30, 30])
    assert widget.run() is not None, widget.status.details
    qtbot.waitUntil(lambda: "made for other data" in widget.status.value, timeout=5000)
    assert (stores[0] / "zarr.json").read_bytes() == before
    new = folder / (store_base("img", tiny_network.key) + "-2.zarr")
    assert new.is_dir() and EmbeddingStore(new).is_complete(2, 0)
