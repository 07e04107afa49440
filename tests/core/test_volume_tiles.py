"""segment_volume and track_object on tiled slices (``tile_shape``/``halo``).

The demo model (``load_model("demo_nuclei")``) against the sample stack's ground
truth; the tiled result is compared with the untiled one and with the truth.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CountingEncoder

from napari_sam_keras import (
    EmbeddingCache,
    ImageError,
    SAMPredictor,
    TiledSAMPredictor,
    load_model,
    segment_volume,
    track_object,
)
from napari_sam_keras.processing.mask_prompts import interior_point, mask_iou
from napari_sam_keras.sample_data import sample_stack, sample_timelapse

TILE, HALO = 128, 64


@pytest.fixture(scope="module")
def predictor():
    return SAMPredictor(load_model("demo_nuclei"))


@pytest.fixture(scope="module")
def stack():
    """(10, 256, 256): four tiles of 128 per slice; 6 ellipsoids clear of each other."""
    return sample_stack(shape=(10, 256, 256), n_cells=6, seed=8, with_labels=True)


def click(truth: np.ndarray) -> tuple[int, dict]:
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    return z, {"point_coords": [interior_point(truth[z])], "point_labels": [1]}


def crossing(labels: np.ndarray) -> list[int]:
    """Ids of the objects cut by a tile border (in y or x) on their widest slice."""
    out = []
    for i in np.unique(labels[labels > 0]):
        truth = labels == i
        z, _ = click(truth)
        ys, xs = np.nonzero(truth[z])
        if ys.min() < TILE <= ys.max() or xs.min() < TILE <= xs.max():
            out.append(int(i))
    return out


def test_tiled_volume_gives_the_untiled_object(predictor, stack):
    image, labels = stack
    ids = crossing(labels)
    assert len(ids) >= 2  # the test is about objects cut by a tile border
    for i in ids:
        truth = labels == i
        z, prompt = click(truth)
        untiled = segment_volume(predictor, image, {z: prompt})
        tiled = segment_volume(predictor, image, {z: prompt}, tile_shape=TILE, halo=HALO)
        assert tiled.shape == image.shape and tiled.dtype == bool
        assert mask_iou(tiled, untiled) >= 0.9, f"object {i}: {mask_iou(tiled, untiled):.2f}"
        assert mask_iou(tiled, truth) >= 0.85, f"object {i}: {mask_iou(tiled, truth):.2f}"
        # carried beyond the prompted slice, through the mask input of each tile
        assert np.count_nonzero(tiled.any(axis=(1, 2))) >= 3


@pytest.mark.filterwarnings("ignore:The box reaches beyond tile")  # halo 0 cuts the object
def test_tiled_embeddings_are_cached_per_tile_never_as_untiled(predictor, stack):
    image, labels = stack
    i = crossing(labels)[0]
    z, prompt = click(labels == i)
    predictor = SAMPredictor(predictor.network)  # its own image; compiled parts shared
    cache = EmbeddingCache()
    with CountingEncoder(predictor) as count:
        segment_volume(predictor, image, {z: prompt}, embeddings=cache)
        untiled = count.calls
        assert untiled == len(cache)
        first = segment_volume(predictor, image, {z: prompt}, embeddings=cache, tile_shape=TILE)
        tiles = count.calls - untiled
        assert tiles >= 3  # the untiled embeddings of the same slices were not used
        assert len(cache) == untiled + tiles
        tile_keys = [k for k in cache._items if len(k) == 5 and k[1] == "tile"]
        assert len(tile_keys) == tiles and {k[2] for k in tile_keys} == {(TILE, TILE)}
        second = segment_volume(predictor, image, {z: prompt}, embeddings=cache, tile_shape=TILE)
        assert count.calls == untiled + tiles  # every tile came from the cache
        assert np.array_equal(first, second)
        # another halo is another tiling: its tiles are computed, not taken
        segment_volume(predictor, image, {z: prompt}, embeddings=cache, tile_shape=TILE, halo=8)
        assert count.calls > untiled + tiles


def test_a_tiled_predictor_keeps_its_tiles(predictor, stack):
    image, labels = stack
    z, prompt = click(labels == crossing(labels)[0])
    own = TiledSAMPredictor(predictor.network)
    own.set_image(image[0], tile_shape=TILE)
    tiles = own.tiles
    segment_volume(own, image, {z: prompt}, tile_shape=TILE, halo=HALO)
    assert own.tiles is tiles


def test_halo_without_tile_shape_is_refused(predictor, stack):
    image, labels = stack
    z, prompt = click(labels == 1)
    with pytest.raises(ImageError, match="halo was given without tile_shape"):
        segment_volume(predictor, image, {z: prompt}, halo=16)
    with pytest.raises(ImageError, match="tile_shape"):
        track_object(predictor, image, {z: prompt}, tile_shape=0)


def test_tracking_on_tiled_frames(predictor):
    frames, labels = sample_timelapse(shape=(6, 256, 256), n_cells=6, seed=3, with_labels=True)
    ids = [i for i in np.unique(labels[0][labels[0] > 0]) if (labels == i).all(axis=0).any()]
    i = ids[0]
    prompt = {0: {"point_coords": [interior_point(labels[0] == i)], "point_labels": [1]}}
    untiled = track_object(predictor, frames, prompt)
    tiled = track_object(predictor, frames, prompt, tile_shape=TILE, halo=HALO)
    assert tiled.any(axis=(1, 2)).all()
    assert mask_iou(tiled, untiled) >= 0.9
