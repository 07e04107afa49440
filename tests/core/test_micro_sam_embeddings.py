"""micro-sam's embedding zarr <-> our store: a round trip gives the same embeddings; stores
written with zarr in micro-sam's layout (2D, a stack, tiles) are read and give the masks of
embeddings computed here; other data or another model is refused before anything is made."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import zarr
from helpers import TINY

from napari_sam_keras import EmbeddingStore, TiledSAMPredictor, build_sam, precompute_embeddings
from napari_sam_keras.errors import EmbeddingStoreError, EmbeddingStoreMismatch
from napari_sam_keras.segmentation.micro_sam_embeddings import (
    export_micro_sam_embeddings,
    import_micro_sam_embeddings,
    model_label,
)


@pytest.fixture(scope="module")
def network():
    return build_sam(TINY, seed=0)


def _image(seed: int = 0, shape=(72, 90)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(100, 400, shape).astype(np.uint16)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    image[..., (yy - 30) ** 2 + (xx - 40) ** 2 < 200] += 3000
    return image


def _entries(store: EmbeddingStore, planes: int, tiles: int) -> list:
    return [store.read(z, t) for z in range(planes) for t in range(tiles)]


def test_round_trip_through_micro_sams_layout(network, tmp_path):
    image = _image()
    ours = tmp_path / "ours.zarr"
    precompute_embeddings(network, image, ours)
    theirs = export_micro_sam_embeddings(ours, image, tmp_path / "micro.zarr")

    group = zarr.open_group(str(theirs), mode="r")
    assert group.attrs["data_signature"] == hashlib.sha1(image.tobytes()).hexdigest()
    assert group.attrs["original_size"] == [72, 90] and group.attrs["model_type"] == model_label(
        network.name
    )
    stored = EmbeddingStore(ours, read_only=True).read(0, 0)
    np.testing.assert_array_equal(group["features"][...], stored.features.transpose(0, 3, 1, 2))

    again = import_micro_sam_embeddings(theirs, image, network, tmp_path / "again.zarr")
    back = again.read(0, 0)
    np.testing.assert_array_equal(back.features, stored.features)
    assert (back.original_size, back.input_size) == (stored.original_size, stored.input_size)
    assert not (tmp_path / "again.zarr" / "p00000").samefile(theirs)  # a new store of ours


def _write_micro_sam(
    path, image, features: list, sizes: list, model: str, tile_shape=None, halo=None, stack=False
):
    """A store in micro-sam's layout, written with zarr alone (as micro-sam writes it)."""
    group = zarr.open_group(str(path), mode="w-", zarr_format=2)
    group.attrs.update(
        {
            "data_signature": hashlib.sha1(image.tobytes()).hexdigest(),
            "tile_shape": None if tile_shape is None else list(tile_shape),
            "halo": None if halo is None else list(halo),
            "model_type": model,
        }
    )
    channels_first = [
        np.stack([f.transpose(0, 3, 1, 2) for f in per_plane]) for per_plane in features
    ]
    if tile_shape is None:
        data = channels_first[0] if stack else channels_first[0][0]
        group.create_array("features", data=data)
        group.attrs.update({"original_size": list(sizes[0][0]), "input_size": list(sizes[0][1])})
        return path
    tiles = group.create_group("features")
    for t, data in enumerate(channels_first):
        array = tiles.create_array(str(t), data=data if stack else data[0])
        array.attrs.update({"original_size": list(sizes[t][0]), "input_size": list(sizes[t][1])})
    group.attrs.update({"original_size": None, "input_size": None})
    return path


def test_a_tiled_stack_written_by_zarr_in_micro_sams_layout_gives_the_same_masks(network, tmp_path):
    stack = np.stack([_image(1), _image(2)])
    reference = tmp_path / "reference.zarr"
    precompute_embeddings(network, stack, reference, tile_shape=(48, 48), halo=(8, 8))
    ref = EmbeddingStore(reference, read_only=True)
    tiles = 4
    features = [[ref.read(z, t).features for z in range(2)] for t in range(tiles)]
    sizes = [(ref.read(0, t).original_size, ref.read(0, t).input_size) for t in range(tiles)]
    source = _write_micro_sam(
        tmp_path / "micro.zarr",
        stack,
        features,
        sizes,
        model_label(network.name),
        (48, 48),
        (8, 8),
        True,
    )

    ours = import_micro_sam_embeddings(source, stack, network, tmp_path / "ours.zarr")
    for got, want in zip(_entries(ours, 2, tiles), _entries(ref, 2, tiles), strict=True):
        np.testing.assert_array_equal(got.features, want.features)
    point = np.array([[40.0, 30.0]])
    masks = [
        TiledSAMPredictor(network, embeddings=store, warm_up=False)
        for store in (tmp_path / "ours.zarr", reference)
    ]
    results = []
    for predictor in masks:
        predictor.set_image(stack[1])
        assert predictor.tiles is not None  # the stored tiles are used
        results.append(predictor.predict(point, np.array([1]))[0])
    np.testing.assert_array_equal(results[0], results[1])


def test_other_data_or_another_model_is_refused_and_nothing_is_made(network, tmp_path):
    image = _image()
    ours = tmp_path / "ours.zarr"
    precompute_embeddings(network, image, ours)
    emb = EmbeddingStore(ours, read_only=True).read(0, 0)
    sizes = [(emb.original_size, emb.input_size)]
    source = _write_micro_sam(tmp_path / "vit.zarr", image, [[emb.features]], sizes, "vit_b_lm")
    target = tmp_path / "new.zarr"
    with pytest.raises(EmbeddingStoreMismatch, match="other data"):
        import_micro_sam_embeddings(source, _image(5), network, target)
    with pytest.raises(EmbeddingStoreMismatch, match="computed by 'vit_b_lm'"):
        import_micro_sam_embeddings(source, image, network, target)
    assert not target.exists()
    with pytest.raises(EmbeddingStoreError, match="not a micro-sam embedding store"):
        import_micro_sam_embeddings(ours, image, network, target)  # ours is not theirs
    trusted = import_micro_sam_embeddings(source, image, network, target, trust_model=True)
    np.testing.assert_array_equal(trusted.read(0, 0).features, emb.features)
