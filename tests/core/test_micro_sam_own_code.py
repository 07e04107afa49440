"""micro-sam's own code on both sides of the embedding exchange.

micro-sam (installed without its heavy extras by scripts/setup) computes a store with its
``precompute_image_embeddings`` from a tiny random official SAM; we import it and compare
with what our Keras network computes for the same image, tile by tile.  The other way, a
store we export is opened by micro-sam's ``precompute_image_embeddings`` (which must reuse
it, not recompute) and segmented by its ``segment_from_points``.  torchvision's few
functions that segment-anything and micro-sam import come from the tests' shim
(tests/official_sam.py): PyPI's torchvision does not import beside the CPU torch.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, save_official_checkpoint
from official_sam import install_torchvision_shim

from napari_sam_keras import EmbeddingStore, SAMPredictor, load_model, precompute_embeddings
from napari_sam_keras.model.config import VIT_B, VIT_T
from napari_sam_keras.segmentation.micro_sam_embeddings import (
    export_micro_sam_embeddings,
    import_micro_sam_embeddings,
    micro_sam_model_type,
    model_label,
)
from napari_sam_keras.segmentation.tiling import TileGrid

TILES = {"tile_shape": (48, 48), "halo": (8, 8)}


@pytest.fixture(scope="module")
def micro_sam(tmp_path_factory):
    """(micro_sam.util, micro_sam.prompt_based_segmentation, its predictor, our network)."""
    install_torchvision_shim()
    from micro_sam import prompt_based_segmentation, util
    from segment_anything import SamPredictor as OfficialPredictor

    checkpoint = tmp_path_factory.mktemp("micro_sam") / "tiny_sam.pth"
    sam = save_official_checkpoint(TINY, checkpoint, seed=3).eval()
    network = load_model(checkpoint)
    predictor = OfficialPredictor(sam)
    # what micro_sam.util.get_sam_model sets (its registry has only the full-size models)
    predictor.model_type = micro_sam_model_type(network.name, network.config)
    predictor.model_name = model_label(network.name)
    predictor._hash = None
    return util, prompt_based_segmentation, predictor, network


def _image(seed: int, shape=(72, 90)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(100, 400, shape).astype(np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image[(yy - 30) ** 2 + (xx - 40) ** 2 < 200] += 3000
    image[(yy - 55) ** 2 + (xx - 70) ** 2 < 120] += 2000
    return image


def _files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", ["2d", "tiled stack"])
def test_a_store_micro_sam_computed_imports_and_equals_ours(micro_sam, kind, tmp_path):
    util, _, predictor, network = micro_sam
    data = _image(0) if kind == "2d" else np.stack([_image(1), _image(2)])
    tiling = {} if kind == "2d" else TILES
    theirs = tmp_path / "micro.zarr"
    util.precompute_image_embeddings(
        predictor, data, save_path=str(theirs), verbose=False, **tiling
    )
    before = _files(theirs)

    imported = import_micro_sam_embeddings(theirs, data, network, tmp_path / "imported.zarr")
    assert _files(theirs) == before  # the foreign store was only read

    planes = [data] if kind == "2d" else list(data)
    grid = TileGrid(planes[0].shape, tiling.get("tile_shape", planes[0].shape), tiling.get("halo"))
    ours = SAMPredictor(network, warm_up=False)
    for z, plane in enumerate(planes):
        for tile in grid:
            r0, r1, c0, c1 = tile.outer
            # micro-sam's own conversion to uint8 (per tile: floor of its min..max map);
            # from there our Keras encoder must give micro-sam's torch encoder's tensor
            ours.set_image(util._to_image(plane[r0:r1, c0:c1]))
            got = imported.read(z, tile.index)
            want = ours.embedding_state()
            assert (got.original_size, got.input_size) == (want.original_size, want.input_size)
            np.testing.assert_allclose(got.features, want.features, atol=2e-4, rtol=1e-3)


def test_our_intensity_map_differs_from_micro_sams_by_rounding_only(micro_sam, tmp_path):
    """Ours rounds a plane's min..max map, micro-sam truncates it (per tile when tiled):
    the embeddings of one image differ by well under 1 %."""
    util, _, predictor, network = micro_sam
    data = np.stack([_image(1), _image(2)])
    theirs = tmp_path / "micro.zarr"
    util.precompute_image_embeddings(predictor, data, save_path=str(theirs), verbose=False, **TILES)
    imported = import_micro_sam_embeddings(theirs, data, network, tmp_path / "imported.zarr")
    precompute_embeddings(network, data, tmp_path / "computed.zarr", **TILES)
    computed = EmbeddingStore(tmp_path / "computed.zarr", read_only=True)

    def error(a, b) -> float:
        return float(np.linalg.norm(a.features - b.features) / np.linalg.norm(b.features))

    pairs = [(imported.read(z, t), computed.read(z, t)) for z in range(2) for t in range(4)]
    assert max(error(a, b) for a, b in pairs) < 0.02
    assert error(imported.read(0, 0), computed.read(0, 1)) > 0.2  # the measure tells tiles apart


def test_masks_from_micro_sams_store_equal_micro_sams_own(micro_sam, tmp_path):
    util, segmentation, predictor, network = micro_sam
    image = _image(0)
    theirs = tmp_path / "micro.zarr"
    embeddings = util.precompute_image_embeddings(
        predictor, image, save_path=str(theirs), verbose=False
    )
    store = import_micro_sam_embeddings(theirs, image, network, tmp_path / "ours.zarr")
    ours = SAMPredictor(network, embeddings=store.path, warm_up=False)
    ours.set_image(image)
    for yx in ([30, 40], [55, 70], [10, 80]):
        want = segmentation.segment_from_points(
            predictor, np.array([yx]), np.array([1]), image_embeddings=embeddings
        )[0]
        masks, scores, _ = ours.predict(np.array([yx[::-1]], float), np.array([1]))
        got = masks[int(np.argmax(scores))]
        # the same embedding, two decoders (parity ~1e-5 in the logits): a pixel whose logit
        # is within that of 0 may flip
        assert np.mean(got == want) > 0.999, yx


@pytest.mark.parametrize("kind", ["2d", "stack", "tiled stack"])
def test_micro_sam_reuses_our_export_and_segments_as_from_its_own(micro_sam, kind, tmp_path):
    util, segmentation, predictor, network = micro_sam
    data = _image(4) if kind == "2d" else np.stack([_image(5), _image(6)])
    tiling = TILES if kind == "tiled stack" else {}
    ours = tmp_path / "ours.zarr"
    precompute_embeddings(network, data, ours, **tiling)
    export = export_micro_sam_embeddings(ours, data, tmp_path / "for-micro-sam.zarr")
    if kind == "stack":  # micro-sam's untiled 3D path assumes a full-size model's embedding
        own = [util.precompute_image_embeddings(predictor, p, verbose=False) for p in data]
    else:
        own = util.precompute_image_embeddings(
            predictor, data, save_path=str(tmp_path / "own.zarr"), verbose=False, **tiling
        )

    encoder = predictor.model.image_encoder
    calls = []
    handle = encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reused = util.precompute_image_embeddings(
                predictor, data, save_path=str(export), verbose=False, **tiling
            )
    finally:
        handle.remove()
    assert not calls  # micro-sam accepted the store: nothing was recomputed
    # micro-sam warns (only) about the keys it added lately and we cannot know: which
    # micro-sam version reads the store, and the hash of the checkpoint file it loaded
    mismatched = {m.split()[3] for m in (str(w.message) for w in caught) if "signature" in m}
    assert mismatched <= {"micro_sam_version", "model_hash"}, mismatched

    prompts = [(0, [30, 40]), (0, [55, 70])] + ([(1, [30, 40])] if data.ndim == 3 else [])
    for z, yx in prompts:
        i = z if data.ndim == 3 else None
        args = (predictor, np.array([yx]), np.array([1]))
        got = segmentation.segment_from_points(*args, image_embeddings=reused, i=i)
        if kind == "stack":
            want = segmentation.segment_from_points(*args, image_embeddings=own[z])
        else:
            want = segmentation.segment_from_points(*args, image_embeddings=own, i=i)
        # our Keras encoder against the official torch encoder, decoded by the same code
        assert np.mean(got == want) > 0.995, (z, yx)


def test_micro_sams_model_type_is_the_architecture():
    assert micro_sam_model_type("models/vit_b_lm.pt", VIT_B) == "vit_b"
    assert micro_sam_model_type("vit_t_em_organelles", VIT_T.to_dict()) == "vit_t"
    assert micro_sam_model_type("models/tiny_sam.pth", TINY) == "tiny_sam"
