"""The on-disk embedding store: reuse without the encoder, trust checks, crash safety,
corruption detection and bounded memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY

from napari_sam_keras import (
    EmbeddingCache,
    EmbeddingError,
    SAMAutomaticMaskGenerator,
    SAMPredictor,
    TiledSAMPredictor,
    build_sam,
)
from napari_sam_keras.model.embedding_store import (
    CorruptEmbeddingError,
    EmbeddingStore,
    EmbeddingStoreError,
    EmbeddingStoreMismatch,
    EmbeddingStoreWarning,
    image_signature,
)
from napari_sam_keras.segmentation.precompute import precompute_embeddings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def calls(tiny_network, monkeypatch) -> list[int]:
    """Count the image-encoder runs of ``tiny_network`` (the real encoder still runs)."""
    encoder = tiny_network.image_encoder(True)
    real = encoder.embed
    counter = [0]

    def embed(rgb):
        counter[0] += 1
        return real(rgb)

    monkeypatch.setattr(encoder, "embed", embed)
    return counter


def _stack(planes: int = 6, size: tuple[int, int] = (96, 120), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, (planes, *size)).astype(np.uint16)


def _chunk(store_path: Path, plane: int, tile: int) -> Path:
    (chunk,) = [
        p for p in (store_path / f"p{plane:05d}" / f"t{tile:05d}" / "c").rglob("*") if p.is_file()
    ]
    return chunk


POINT, LABEL = np.array([[50.0, 40.0]]), np.array([1])


# ----------------------------------------------------------------------------- reuse


@pytest.mark.parametrize("tiling", [{}, {"tile_shape": 64, "halo": 16}])
def test_a_second_run_computes_no_embedding_and_gives_identical_masks(
    tiny_network, calls, tmp_path, tiling
):
    image = _stack(1)[0]
    plain = TiledSAMPredictor(tiny_network)
    plain.set_image(image, **tiling)
    expected = plain.predict(POINT, LABEL)
    calls[0] = 0

    store = tmp_path / "image.zarr"
    first = TiledSAMPredictor(tiny_network, embeddings=store)
    first.set_image(image, **tiling)
    masks = first.predict(POINT, LABEL)
    computed = calls[0]
    assert computed == 1
    for a, b in zip(expected, masks, strict=True):
        np.testing.assert_array_equal(a, b)

    calls[0] = 0
    second = TiledSAMPredictor(tiny_network, embeddings=EmbeddingStore(store))
    second.set_image(image)  # the store's tiling is used when none is given
    again = second.predict(POINT, LABEL)
    assert calls[0] == 0
    assert second.embedding_source.read == 1 and second.embedding_source.computed == 0
    for a, b in zip(expected, again, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("tiling", [{}, {"tile_shape": 64, "halo": 16}])
def test_an_in_memory_cache_is_accepted_as_a_store_is(tiny_network, calls, tiling):
    """embeddings= takes an EmbeddingCache (or a dict) everywhere, with the same masks."""
    image = _stack(1)[0]
    plain = TiledSAMPredictor(tiny_network)
    plain.set_image(image, **tiling)
    expected = plain.predict(POINT, LABEL)
    calls[0] = 0
    for cache in (EmbeddingCache(), {}):
        for _ in range(2):
            predictor = TiledSAMPredictor(tiny_network, embeddings=cache)
            predictor.set_image(image, **tiling)
            for a, b in zip(expected, predictor.predict(POINT, LABEL), strict=True):
                np.testing.assert_array_equal(a, b)
    assert calls[0] == 2  # once per cache: the second predictor found it there
    generator = SAMAutomaticMaskGenerator(
        tiny_network, points_per_side=2, embeddings=cache, **tiling
    )
    first = generator.generate(image)
    computed = calls[0]
    if not tiling:  # the predictors' embedding is the generator's
        assert computed == 2
    second = generator.generate(image)
    assert calls[0] == computed  # every tile is in the cache now
    assert [m["area"] for m in first] == [m["area"] for m in second]
    with pytest.raises(EmbeddingError, match="EmbeddingCache"):
        SAMPredictor(tiny_network, embeddings=42)


def test_a_precomputed_stack_serves_every_plane_without_the_encoder(tiny_network, calls, tmp_path):
    stack = _stack(5)
    store = tmp_path / "stack.zarr"
    steps = []
    counts = precompute_embeddings(
        tiny_network, stack, store, tile_shape=(64, 64), halo=8, progress=lambda *a: steps.append(a)
    )
    assert counts == {"computed": 20, "reused": 0, "repaired": 0} and calls[0] == 20
    assert steps[0] == (0, 20) and steps[-1] == (20, 20)
    meta = EmbeddingStore(store).metadata
    assert meta["data"]["planes"] == 5 and meta["data"]["stack"] is True
    assert meta["model"]["key"] == tiny_network.key and meta["model"]["key"].startswith("sha256:")
    assert meta["tiling"] == {"tile_shape": [64, 64], "halo": [8, 8]}
    assert meta["data"]["plane_signatures"][3] == image_signature(stack[3])
    assert meta["embedding_shape"] == [16, 16, 32] and meta["package_version"]

    calls[0] = 0
    assert precompute_embeddings(tiny_network, stack, store, tile_shape=64, halo=8)["reused"] == 20
    predictor = TiledSAMPredictor(tiny_network, embeddings=store)
    predictor.set_image(stack[3])
    masks, _, _ = predictor.predict(POINT, LABEL)
    generator = SAMAutomaticMaskGenerator(
        tiny_network, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0
    )
    stored_gen = SAMAutomaticMaskGenerator(
        tiny_network,
        points_per_side=4,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        embeddings=store,
    )
    from_store = stored_gen.generate(stack[2])
    assert calls[0] == 0 and predictor.embedding_source.plane == 3

    reference = TiledSAMPredictor(tiny_network)
    reference.set_image(stack[3], tile_shape=64, halo=8)
    np.testing.assert_array_equal(reference.predict(POINT, LABEL)[0], masks)
    fresh = SAMAutomaticMaskGenerator(
        tiny_network,
        points_per_side=4,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        tile_shape=64,
        halo=8,
    ).generate(stack[2])
    assert len(fresh) == len(from_store)
    for a, b in zip(fresh, from_store, strict=True):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
    del generator


# ----------------------------------------------------------------------------- trust


def test_a_store_for_other_data_model_tiling_or_contrast_is_refused(tiny_network, tmp_path):
    image, other = _stack(2)
    store = tmp_path / "a.zarr"
    SAMPredictor(tiny_network, embeddings=store).set_image(image)

    predictor = TiledSAMPredictor(tiny_network, embeddings=store)
    with pytest.raises(EmbeddingStoreMismatch, match="other data"):
        predictor.set_image(other)
    with pytest.raises(EmbeddingStoreMismatch, match="other data"):
        predictor.set_image(image[:, :100])
    with pytest.raises(EmbeddingStoreMismatch, match="tile_shape"):
        predictor.set_image(image, tile_shape=64)
    with pytest.raises(EmbeddingStoreMismatch, match="contrast limits"):
        predictor.set_image(image, contrast_limits=(0, 4095))
    another_model = build_sam(TINY, seed=1)
    with pytest.raises(EmbeddingStoreMismatch, match="another model"):
        SAMPredictor(another_model, embeddings=store).set_image(image)
    with pytest.raises(EmbeddingStoreMismatch, match="other data"):
        precompute_embeddings(tiny_network, _stack(3), store)

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a store")
    with pytest.raises(EmbeddingStoreError, match="not an embedding store"):
        EmbeddingStore(tmp_path / "notes")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(EmbeddingStoreError, match="is a file"):
        EmbeddingStore(tmp_path / "file.zarr")
    with pytest.raises(EmbeddingStoreError, match="no embedding store"):
        EmbeddingStore(tmp_path / "missing.zarr", read_only=True)


# ----------------------------------------------------------------------------- crashes


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from napari_sam_keras import load_model
    from napari_sam_keras.model.embedding_store import EmbeddingStore
    from napari_sam_keras.segmentation.precompute import precompute_embeddings

    checkpoint, stack_file, store, kill_at = sys.argv[1:5]
    marked = [0]
    real_mark = EmbeddingStore._mark_complete

    def mark_then_die(self, array, embedding, features):
        marked[0] += 1
        if marked[0] == int(kill_at):  # this entry's data is written, its marker is not
            os.kill(os.getpid(), signal.SIGKILL)
        real_mark(self, array, embedding, features)

    EmbeddingStore._mark_complete = mark_then_die
    precompute_embeddings(
        load_model(checkpoint), np.load(stack_file), store, tile_shape=64, halo=8
    )
    print("not killed")
    """
)


def test_a_precompute_killed_half_way_resumes_and_the_store_is_valid(
    tiny_network, tiny_checkpoint, calls, tmp_path
):
    stack = _stack(4)  # 4 planes x 4 tiles
    np.save(tmp_path / "stack.npy", stack)
    store = tmp_path / "stack.zarr"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, tiny_checkpoint, tmp_path / "stack.npy", store, "7"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr[-3000:]

    killed = EmbeddingStore(store)
    report = killed.verify(tiles=4)
    assert len(report["complete"]) == 6 and report["corrupt"] == []
    assert (1, 2) in report["missing"]  # the 7th entry: data on disk, but not marked complete
    assert any((store / "p00001" / "t00002" / "c").rglob("*"))

    counts = precompute_embeddings(tiny_network, stack, store, tile_shape=64, halo=8)
    assert counts == {"computed": 10, "reused": 6, "repaired": 0} and calls[0] == 10
    resumed = EmbeddingStore(store)
    assert len(resumed.verify(tiles=4)["complete"]) == 16

    fresh = tmp_path / "fresh.zarr"
    precompute_embeddings(tiny_network, stack, fresh, tile_shape=64, halo=8)
    fresh_store = EmbeddingStore(fresh)
    for plane in range(4):
        for tile in range(4):
            a, b = resumed.read(plane, tile), fresh_store.read(plane, tile)
            np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)
            assert a.original_size == b.original_size and a.input_size == b.input_size


def test_a_corrupted_chunk_is_detected_not_used(tiny_network, calls, tmp_path):
    stack = _stack(2)
    store = tmp_path / "s.zarr"
    precompute_embeddings(tiny_network, stack, store)
    good = EmbeddingStore(store).read(1, 0)

    chunk = _chunk(store, 1, 0)
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(CorruptEmbeddingError, match="damaged"):
        EmbeddingStore(store).read(1, 0)
    _chunk(store, 0, 0).unlink()  # a lost chunk reads as zeros in zarr: caught too
    with pytest.raises(CorruptEmbeddingError):
        EmbeddingStore(store).read(0, 0)

    calls[0] = 0
    predictor = SAMPredictor(tiny_network, embeddings=store)
    with pytest.warns(EmbeddingStoreWarning, match="computed again"):
        predictor.set_image(stack[1])
    assert calls[0] == 1
    np.testing.assert_allclose(predictor.embedding_state().features, good.features, atol=1e-6)
    assert EmbeddingStore(store).read(1, 0) is not None  # rewritten

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmbeddingStoreWarning)
        counts = precompute_embeddings(tiny_network, stack, store)
    assert counts == {"computed": 0, "reused": 1, "repaired": 1}
    assert len(EmbeddingStore(store).verify(tiles=1)["complete"]) == 2


# ----------------------------------------------------------------------------- memory


class LazyStack:
    """A stack whose planes are made when sliced: the data itself is never in memory."""

    def __init__(self, planes: int, size: tuple[int, int]) -> None:
        self.shape = (planes, *size)
        self.dtype = np.dtype(np.uint16)
        self.ndim = 3

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        z = key[0]
        plane = np.random.default_rng(z).integers(0, 4096, self.shape[1:]).astype(np.uint16)
        return plane[key[1:]] if len(key) > 1 else plane


def test_precomputing_a_50_plane_stack_keeps_memory_bounded(tiny_network, tmp_path):
    """Embeddings go to disk as they are made: the peak of Python-allocated memory (numpy
    arrays included) for 50 planes is that for 10, not 40 embeddings more."""
    precompute_embeddings(tiny_network, LazyStack(2, (128, 128)), tmp_path / "warm.zarr")

    def peak(planes: int) -> int:
        tracemalloc.start()
        try:
            precompute_embeddings(
                tiny_network, LazyStack(planes, (128, 128)), tmp_path / f"{planes}.zarr"
            )
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    embedding_bytes = 16 * 16 * 32 * 4
    small, large = peak(10), peak(50)
    assert EmbeddingStore(tmp_path / "50.zarr").verify(tiles=1)["complete"].__len__() == 50
    # keeping the 40 extra embeddings would add 40 * embedding_bytes; allow half of that
    assert large < small + 20 * embedding_bytes, (small, large)
