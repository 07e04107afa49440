"""Tiling: the geometry of tiles and halos, prompts shifted into a tile, masks pasted back,
lazy reading, and the tiled automatic generator.

With random weights the masks mean nothing, so the model-based tests here check geometry:
a tiled prediction must be exactly what the untiled predictor gives on the tile (with its
halo) that holds the prompt, pasted at the tile's place.  The segmentation-quality tests
(a blob cut by a tile border comes back whole; the tiled generator finds each blob once)
use the trained demo model ``demo_nuclei`` shipped in the package.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import TINY

from napari_sam_keras import SAMAutomaticMaskGenerator, SAMPredictor, TiledSAMPredictor, build_sam
from napari_sam_keras.errors import ImageError, PromptError, SAMError
from napari_sam_keras.processing import masks as mu
from napari_sam_keras.segmentation.automatic_mask_generator import _Masks, _merge_crops
from napari_sam_keras.segmentation.tiled_predictor import tiles_of
from napari_sam_keras.segmentation.tiling import (
    TiledImage,
    TileGrid,
    TilingWarning,
    paste,
    prompts_into_tile,
)

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def network():
    return build_sam(TINY, seed=0)


def counting_encoder(network, monkeypatch) -> list[int]:
    """Count the network's image-encoder runs (the real encoder still runs)."""
    encoder = network.image_encoder(True)
    real = encoder.embed
    calls = [0]

    def embed(rgb):
        calls[0] += 1
        return real(rgb)

    monkeypatch.setattr(encoder, "embed", embed)
    return calls


def blobs_image(size: int = 3000, radius: int = 40, seed: int = 0):
    """A uint16 image of bright discs on a dim noisy background, some cut by the 1024 grid."""
    rng = np.random.default_rng(seed)
    centres = [(1024 + 10, 500), (700, 1024 - 15), (2048 - 5, 2048 + 20), (300, 300)]
    centres = [c for c in centres if radius < min(c) and max(c) < size - radius]
    centres += [(int(y), int(x)) for y, x in rng.integers(100, size - 100, (8, 2))]
    image = rng.normal(300, 20, (size, size))
    truth = np.zeros((size, size), np.int32)
    for label, (cy, cx) in enumerate(centres, start=1):
        y0, y1, x0, x1 = cy - radius, cy + radius + 1, cx - radius, cx + radius + 1
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        region = truth[y0:y1, x0:x1]
        free = disc & (region == 0)
        region[free] = label
        image[y0:y1, x0:x1][free] = 3000
    return np.clip(image, 0, 65535).astype(np.uint16), truth, centres


class RecordingArray:
    """An array-like that answers slices only and records how much each read asked for."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.largest_read = 0

    def __getitem__(self, key):
        out = np.asarray(self.data[key])
        self.largest_read = max(self.largest_read, out.size)
        return out

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole lazy image was read into memory")


# ----------------------------------------------------------------------------- geometry


def test_tiles_cover_the_image_and_halos_are_clipped():
    grid = TileGrid((1000, 700), (256, 300), halo=(32, 40))
    assert grid.grid_shape == (4, 3) and len(grid) == 12
    covered = np.zeros((1000, 700), np.int32)
    for tile in grid:
        y0, y1, x0, x1 = tile.inner
        covered[y0:y1, x0:x1] += 1
        oy0, oy1, ox0, ox1 = tile.outer
        assert oy0 == max(0, y0 - 32) and oy1 == min(1000, y1 + 32)
        assert ox0 == max(0, x0 - 40) and ox1 == min(700, x1 + 40)
        assert tile.shape == (oy1 - oy0, ox1 - ox0)
        assert tile.crop_box == [ox0, oy0, ox1, oy1]
    assert (covered == 1).all()  # inner tiles tile the image exactly once
    assert grid[11].inner == (768, 1000, 600, 700)  # the last tiles are smaller
    assert TileGrid((100, 100), 512).tiles[0].outer == (0, 100, 0, 100)


def test_tile_choice_by_the_prompts_centroid():
    grid = TileGrid((1000, 1000), 500, halo=50)
    assert grid.tile_at(499.9, 10).index == 0
    assert grid.tile_at(500, 10).index == 1
    assert grid.tile_at(2000, 2000).index == 3  # clamped into the image
    # two points in tile 0 and one far in tile 3: the centroid (x 400, y 400) is in tile 0
    pts = np.array([[100, 100], [200, 200], [900, 900]])
    assert grid.tile_for_prompt(pts, None).index == 0
    assert grid.tile_for_prompt(None, np.array([450, 450, 650, 650])).index == 3


@pytest.mark.parametrize(
    ("tile_shape", "halo"), [(0, None), ((10, 0), None), (10, -1), ("10", None), (2.5, None)]
)
def test_bad_tile_shapes_are_clear_errors(tile_shape, halo):
    with pytest.raises(ImageError):
        TileGrid((100, 100), tile_shape, halo)


def test_prompts_are_shifted_into_the_tile_dropped_or_clipped_with_a_warning():
    tile = TileGrid((1000, 1000), 500, halo=50)[3]  # outer: rows 450..1000, cols 450..1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pts, labels, box = prompts_into_tile(
            tile, np.array([[600.0, 700.0]]), np.array([1]), np.array([500, 460, 900, 990])
        )
    np.testing.assert_allclose(pts, [[150, 250]])
    np.testing.assert_allclose(box, [50, 10, 450, 540])
    with pytest.warns(TilingWarning, match="1 of 2 points"):
        pts, labels, _ = prompts_into_tile(
            tile, np.array([[600.0, 700.0], [10.0, 10.0]]), np.array([1, 0]), None
        )
    assert len(pts) == 1 and labels.tolist() == [1]
    with pytest.warns(TilingWarning, match="clipped"):
        _, _, box = prompts_into_tile(tile, None, None, np.array([100, 600, 900, 900]))
    np.testing.assert_allclose(box, [0, 150, 450, 450])
    with pytest.warns(TilingWarning), pytest.raises(PromptError, match="outside tile 3"):
        prompts_into_tile(tile, np.array([[10.0, 10.0]]), np.array([1]), None)


def test_masks_are_pasted_at_the_tile_place():
    grid = TileGrid((300, 400), 128, halo=16)
    tile = grid[5]  # row 1, column 2
    masks = np.ones((3, *tile.shape), bool)
    out = paste(masks, tile, (300, 400))
    y0, y1, x0, x1 = tile.outer
    assert out.shape == (3, 300, 400) and out.sum() == masks.sum()
    assert out[:, y0:y1, x0:x1].all()
    logits = paste(np.zeros(tile.shape, np.float32), tile, (300, 400))
    assert (logits[:y0] < -1e30).all() and (logits[y0:y1, x0:x1] == 0).all()


def test_tiled_image_converts_every_tile_like_the_whole_image():
    rng = np.random.default_rng(1)
    image = rng.integers(100, 5000, (333, 250)).astype(np.uint16)
    image[0, 0], image[-1, -1] = 7, 60000  # extremes in the first and last tile
    grid = TileGrid(image.shape, 100, halo=20)
    tiled = TiledImage(image, grid)
    assert tiled.contrast_limits == (7.0, 60000.0)
    from napari_sam_keras.processing.images import to_rgb_uint8

    whole = to_rgb_uint8(image)
    for tile in grid:
        y0, y1, x0, x1 = tile.outer
        np.testing.assert_array_equal(tiled.rgb(tile), whole[y0:y1, x0:x1])
    with pytest.raises(ImageError, match="NaN"):
        TiledImage(np.full((10, 10), np.nan), TileGrid((10, 10), 5))


# ----------------------------------------------------------------------------- predictor


def test_without_tile_shape_nothing_changes(network, monkeypatch):
    """tile_shape=None is the untiled path; one tile covering the image gives the same."""
    from napari_sam_keras.processing.images import to_rgb_uint8

    rng = np.random.default_rng(2)
    image = rng.integers(0, 4096, (180, 240)).astype(np.uint16)
    point, label = np.array([[100.0, 60.0]]), np.array([1])
    box = np.array([20, 30, 150, 120])

    reference = SAMPredictor(network)
    reference.set_embedding(network.image_encoder(True).embed(to_rgb_uint8(image)))
    expected = reference.predict(point, label, box=box)

    predictor = TiledSAMPredictor(network)
    predictor.set_image(image)
    assert predictor.tiles is None and predictor.embedding_source is None
    got = predictor.predict(point, label, box=box)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)

    calls = counting_encoder(network, monkeypatch)
    predictor.set_image(image, tile_shape=(512, 512), halo=64)  # one tile: the whole image
    assert len(predictor.tiles.grid) == 1 and calls[0] == 0  # tiles are embedded on demand
    masks, scores, low_res = predictor.predict(point, label, box=box)
    assert calls[0] == 1
    np.testing.assert_array_equal(masks, expected[0])
    np.testing.assert_array_equal(scores, expected[1])
    np.testing.assert_array_equal(low_res, expected[2])


def test_a_prompt_is_answered_by_its_tile_and_pasted_back(network, monkeypatch):
    """On a 3000 x 3000 image: a point on a disc cut by a tile border is answered by the tile
    holding it, and the disc lies whole inside that tile plus its halo; the mask is exactly
    the untiled predictor's on that tile, pasted at its place.  Only that tile is embedded."""
    image, truth, centres = blobs_image()
    calls = counting_encoder(network, monkeypatch)
    predictor = TiledSAMPredictor(network)
    predictor.set_image(image, tile_shape=1024, halo=128)
    assert len(predictor.tiles.grid) == 9 and predictor.original_size == (3000, 3000)

    cy, cx = centres[0]  # centre 10 px below the border between tile rows 0 and 1
    masks, scores, _ = predictor.predict(np.array([[cx, cy]]), np.array([1]))
    assert calls[0] == 1
    tile = predictor.tiles.grid.tile_at(cx, cy)
    assert tile.index == 3  # row 1, column 0
    y0, y1, x0, x1 = tile.outer
    disc = truth == 1
    assert disc[:1024].any() and disc[1024:].any()  # cut by the tile border ...
    assert disc[y0:y1, x0:x1].sum() == disc.sum()  # ... but whole inside tile + halo
    assert masks.shape == (3, 3000, 3000)
    assert not masks[:, :y0].any() and not masks[:, y1:].any() and not masks[:, :, x1:].any()

    single = SAMPredictor(network)
    single.set_image(image[y0:y1, x0:x1], contrast_limits=(image.min(), image.max()))
    expected, expected_scores, _ = single.predict(np.array([[cx - x0, cy - y0]]), np.array([1]))
    np.testing.assert_array_equal(masks[:, y0:y1, x0:x1], expected)
    np.testing.assert_array_equal(scores, expected_scores)
    calls[0] = 0  # the untiled predictor's own run

    best, score = predictor.predict_best(np.array([[cx, cy]]), np.array([1]))
    assert best.shape == (3000, 3000) and score == pytest.approx(float(scores.max()))
    assert calls[0] == 0  # the tile's embedding is kept

    # a batch of boxes in two tiles: each pasted from its own tile
    boxes = np.array([[cx - 45, cy - 45, cx + 45, cy + 45], [2000, 2000, 2100, 2100]])
    batch, batch_scores, _ = predictor.predict_batch(boxes=boxes, multimask_output=False)
    assert batch.shape == (2, 1, 3000, 3000) and calls[0] == 1  # the second tile
    one, one_score, _ = predictor.predict(box=boxes[1], multimask_output=False)
    np.testing.assert_array_equal(batch[1], one)
    np.testing.assert_allclose(batch_scores[1], one_score, rtol=1e-5)


def test_large_lazy_images_are_read_one_tile_at_a_time(network):
    image, _, centres = blobs_image(size=2000, seed=3)
    lazy = RecordingArray(image)
    predictor = TiledSAMPredictor(network)
    predictor.set_image(lazy, tile_shape=512, halo=64)
    cy, cx = centres[3]
    masks, _, _ = predictor.predict(np.array([[cx, cy]]), np.array([1]))
    assert lazy.largest_read <= 512 * 2000  # one row of tiles (for the value range) at most

    dask_array = pytest.importorskip("dask.array")
    from_dask = TiledSAMPredictor(network)
    from_dask.set_image(dask_array.from_array(image, chunks=256), tile_shape=512, halo=64)
    masks_dask, _, _ = from_dask.predict(np.array([[cx, cy]]), np.array([1]))
    np.testing.assert_array_equal(masks, masks_dask)


def test_the_whole_image_predictor_points_to_the_tiled_one(network, tmp_path):
    """SAMPredictor embeds the whole image: tile_shape=, or a store made with tiles, is an
    ImageError naming TiledSAMPredictor, raised before the image changes; a tiled predictor
    made from it shares its compiled parts and serves whole images and tiles."""
    image = np.zeros((300, 300), np.uint8)
    plain = SAMPredictor(network, warm_up=False)
    plain.set_image(image)
    before = plain.embedding_state()
    with pytest.raises(ImageError, match="TiledSAMPredictor"):
        plain.set_image(image, tile_shape=100)
    assert plain.embedding_state() is before and tiles_of(plain) is None
    store = tmp_path / "tiles.zarr"
    TiledSAMPredictor(network, warm_up=False, embeddings=store).set_image(image, tile_shape=100)
    with pytest.raises(ImageError, match="TiledSAMPredictor"):
        SAMPredictor(network, warm_up=False, embeddings=store).set_image(image)

    tiled = TiledSAMPredictor.of(plain)
    assert tiled.image_encoder is plain.image_encoder and tiled.prompt_path is plain.prompt_path
    assert TiledSAMPredictor.of(tiled) is tiled and not tiled.is_image_set
    tiled.set_image(image, tile_shape=100)
    assert tiles_of(tiled) is tiled.tiles and len(tiled.tiles.grid) == 9
    assert tiled.original_size == (300, 300) and tiled.input_size is None
    tiled.set_embedding(before)
    assert tiles_of(tiled) is None and tiled.embedding_state() is before
    assert plain.embedding_state() is before  # the plain predictor was left as it was


def test_tiled_prompt_errors(network):
    predictor = TiledSAMPredictor(network)
    predictor.set_image(np.zeros((300, 300), np.uint8), tile_shape=100)
    with pytest.raises(PromptError, match="mask input alone"):
        predictor.predict(mask_input=np.zeros((1, 64, 64), np.float32))
    with pytest.raises(PromptError, match="outside the image"):
        predictor.predict(np.array([[10.0, 400.0]]), np.array([1]))
    with pytest.raises(ImageError, match="tiled"):
        predictor.embedding_state()
    with pytest.raises(ImageError, match="halo was given without tile_shape"):
        predictor.set_image(np.zeros((300, 300), np.uint8), halo=10)


# ----------------------------------------------------------------------------- generator


def test_tiled_generator_treats_tiles_as_crops(network, monkeypatch):
    """Each tile is embedded once and prompted with the grid; records carry the tile box."""
    image, _, _ = blobs_image(size=600, radius=25, seed=4)
    calls = counting_encoder(network, monkeypatch)
    steps = []
    generator = SAMAutomaticMaskGenerator(
        network,
        points_per_side=4,
        points_per_batch=16,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        tile_shape=300,
        halo=50,
    )
    records = generator.generate(image, progress=lambda done, total: steps.append((done, total)))
    assert calls[0] == 4
    assert steps[0] == (0, 4) and steps[-1] == (4, 4)  # one batch of 16 points per tile
    grid = TileGrid((600, 600), 300, 50)
    tile_boxes = [mu.box_xyxy_to_xywh(np.array(t.crop_box)).tolist() for t in grid]
    for record in records:
        assert record["crop_box"] in tile_boxes
        assert record["segmentation"].shape == (600, 600)
    with pytest.raises(SAMError, match="cannot be combined"):
        SAMAutomaticMaskGenerator(network, tile_shape=300, crop_n_layers=1)


def test_masks_found_in_two_tiles_are_kept_once_from_the_smaller_tile():
    """The merge across tiles: the same object seen by two overlapping tiles is one mask."""
    disc = np.ones((40, 40), bool)
    big_tile, small_tile = [0, 0, 700, 700], [500, 0, 1000, 600]
    data = _Masks(
        crops=[disc, disc, disc],
        boxes=np.array([[520, 100, 559, 139], [521, 100, 560, 139], [50, 50, 89, 89]]),
        iou_preds=np.array([0.9, 0.8, 0.9], np.float32),
        stability=np.ones(3, np.float32),
        points=np.zeros((3, 2)),
        crop_boxes=np.array([big_tile, small_tile, big_tile]),
    )
    merged = _merge_crops(data, 0.7)
    assert len(merged) == 2
    assert merged.crop_boxes.tolist() == [small_tile, big_tile]  # smaller tile first, kept


# ----------------------------------------------------------------------------- demo model


@pytest.fixture(scope="module")
def demo_model():
    from napari_sam_keras import load_model

    return load_model("demo_nuclei")  # shipped in the package: a failure here is a failure


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_demo_a_blob_cut_by_a_tile_border_comes_back_whole(demo_model):
    image, truth, centres = blobs_image()
    predictor = TiledSAMPredictor(demo_model)
    predictor.set_image(image, tile_shape=1024, halo=128)
    for number in (1, 2, 3):
        cy, cx = centres[number - 1]
        mask, _ = predictor.predict_best(np.array([[cx, cy]]), np.array([1]))
        assert _iou(mask, truth == number) >= 0.8


def test_demo_tiled_generator_finds_each_blob_once(demo_model):
    image, truth, _ = blobs_image(size=1200, radius=30, seed=5)
    # the tiny demo model predicts lower IoUs than SAM: SAM's default thresholds keep nothing
    generator = SAMAutomaticMaskGenerator(
        demo_model,
        points_per_side=16,
        pred_iou_thresh=0.7,
        stability_score_thresh=0.8,
        tile_shape=512,
        halo=96,
    )
    records = generator.generate(image)
    for label in range(1, truth.max() + 1):
        blob = truth == label
        ious = [_iou(r["segmentation"], blob) for r in records]
        assert max(ious, default=0) >= 0.8, label
        # found once across tiles: no two tiles both keep a mask of this blob (IoU >= 0.7;
        # the tiny model's masks spread over two touching blobs reach ~0.6 and are not that)
        tiles = [tuple(r["crop_box"]) for r, iou in zip(records, ious, strict=True) if iou >= 0.7]
        assert len(set(tiles)) == 1, f"blob {label} kept from tiles {tiles}"
