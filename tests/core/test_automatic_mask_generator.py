"""SAMAutomaticMaskGenerator against the official SamAutomaticMaskGenerator.

Two oracles:

* the tiny random network (same weights in both): end-to-end parity, though
  a random network's masks are speckled and all span the whole image;
* a synthetic decoder put in place of the network's prompt path in both
  generators: shaped masks of many sizes, with small holes and islands, so
  that the crop layers, the edge and NMS filters and the small-region removal
  are exercised on masks like real ones.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch
from official_sam import install_torchvision_shim

from napari_sam_keras import OperationCancelled, SAMAutomaticMaskGenerator, SAMPredictor
from napari_sam_keras.errors import SAMError
from napari_sam_keras.processing import masks as mu
from napari_sam_keras.processing.images import to_rgb_uint8

install_torchvision_shim()
from segment_anything import SamAutomaticMaskGenerator  # noqa: E402
from segment_anything.utils import amg  # noqa: E402

RECORD_KEYS = {
    "segmentation",
    "area",
    "bbox",
    "predicted_iou",
    "point_coords",
    "stability_score",
    "crop_box",
}


def cv2_stand_in() -> types.ModuleType:
    """The official small-region removal needs OpenCV's connectedComponentsWithStats.

    Without OpenCV, a stand-in built on scipy (a labelling independent of the
    scikit-image code under test) numbers 8-connected regions in OpenCV's
    order: by the first 2x2 pixel block, in raster order.
    """
    from scipy import ndimage

    def connected_components_with_stats(image, connectivity=8):
        assert connectivity == 8
        mask = np.asarray(image) > 0
        regions, n = ndimage.label(mask, structure=np.ones((3, 3), int))
        rows, cols = np.nonzero(mask)
        block = (rows // 2) * (mask.shape[1] + 2) + cols // 2
        first = np.full(n + 1, np.iinfo(np.int64).max)
        np.minimum.at(first, regions[rows, cols], block)
        order = np.argsort(first[1:], kind="stable") + 1
        relabel = np.zeros(n + 1, np.int32)
        relabel[order] = np.arange(1, n + 1)
        regions = relabel[regions]
        stats = np.zeros((n + 1, 5), np.int32)
        stats[:, 4] = np.bincount(regions.ravel(), minlength=n + 1)
        return n + 1, regions, stats, None

    shim = types.ModuleType("cv2")
    shim.connectedComponentsWithStats = connected_components_with_stats
    return shim


@pytest.fixture(scope="module", autouse=True)
def _opencv_for_the_official_generator():
    """The stand-in only while this module runs: other tests (imageio's plugin search) must
    not find a fake OpenCV."""
    with pytest.MonkeyPatch.context() as patch:
        if importlib.util.find_spec("cv2") is None:
            patch.setitem(sys.modules, "cv2", cv2_stand_in())
        yield


def structured_image(h: int = 180, w: int = 240, seed: int = 0) -> np.ndarray:
    """A small non-square RGB image: discs and a rectangle on a gradient, with noise."""
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), np.float32)
    img[...] = (xx / w * 60)[..., None]
    for cy, cx, r, color in [
        (50, 60, 30, (220, 40, 40)),
        (120, 170, 40, (40, 200, 60)),
        (140, 50, 20, (60, 60, 230)),
        (40, 190, 15, (250, 250, 50)),
    ]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = color
    img[90:110, 100:140] = (200, 200, 200)
    img += np.random.default_rng(seed).normal(0, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


IMAGE = structured_image()


# --- a synthetic decoder ------------------------------------------------------------------


def synthetic_decoder(points: np.ndarray, image_size: int, low_res: int):
    """(B, 2) xy points in the input frame -> low-res logits (B, 3, m, m), IoU (B, 3).

    Three lobed blobs around each point (radii 12, 30, 60 input pixels); the
    two larger ones have a small hole and a small island beside them.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    centres = (np.arange(low_res) + 0.5) * (image_size / low_res)
    x, y = centres[None, None, :], centres[None, :, None]
    px, py = pts[:, 0, None, None], pts[:, 1, None, None]
    dist = np.hypot(x - px, y - py)
    theta = np.arctan2(y - py, x - px)
    masks = []
    for k, radius in enumerate((12.0, 30.0, 60.0)):
        r = radius * (1 + 0.25 * np.sin(3 * theta + 0.05 * px + 0.03 * py + k))
        logits = 2 * (r - dist)
        if k:
            hole = np.hypot(x - px - 0.5 * radius, y - py)
            logits = logits * (1 - 2 * np.exp(-(hole**2) / 18))
            island = np.hypot(x - px + 1.3 * radius, y - py - 0.3 * radius)
            logits = np.maximum(logits, 2 * (3 - island))
        masks.append(logits)
    logits = np.stack(masks, axis=1).astype(np.float32)
    k = np.arange(3)[None]
    iou = 0.55 + 0.4 * np.sin(0.11 * pts[:, :1] + 0.07 * pts[:, 1:] + k)
    return logits, iou.astype(np.float32)


def use_synthetic_decoder_official(generator: SamAutomaticMaskGenerator) -> None:
    predictor = generator.predictor
    model = predictor.model
    size, m = model.image_encoder.img_size, model.image_encoder.img_size // 4

    def predict_torch(point_coords, point_labels, *args, multimask_output=True, **kw):
        low, iou = synthetic_decoder(point_coords[:, 0].numpy(), size, m)
        low = torch.as_tensor(low)
        masks = model.postprocess_masks(low, predictor.input_size, predictor.original_size)
        return masks, torch.as_tensor(iou), low

    predictor.predict_torch = predict_torch


def use_synthetic_decoder(generator: SAMAutomaticMaskGenerator) -> None:
    cfg = generator.predictor.config

    def predict_input_frame(points, labels, multimask_output=True):
        return synthetic_decoder(points[:, 0], cfg.image_size, cfg.low_res_mask_size)

    generator.predictor.predict_input_frame = predict_input_frame


# --- comparing records --------------------------------------------------------------------


def mask_of(record) -> np.ndarray:
    return mu.decode_segmentation(record["segmentation"])


def assert_same_records(theirs: list[dict], ours: list[dict], min_iou: float = 0.99) -> None:
    """Same number of masks, each official mask matched by one of ours (mask IoU > min_iou)
    and vice versa, with close statistics."""
    assert len(ours) == len(theirs)
    if not theirs:
        return
    for r in ours:
        assert set(r) == RECORD_KEYS
        assert isinstance(r["area"], int)
        assert all(isinstance(v, int) for v in r["bbox"] + r["crop_box"])
        assert isinstance(r["predicted_iou"], float)
        assert isinstance(r["stability_score"], float)
        assert len(r["point_coords"]) == 1 and len(r["point_coords"][0]) == 2
    a = np.array([mask_of(r).ravel() for r in theirs], np.float32)
    b = np.array([mask_of(r).ravel() for r in ours], np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    iou = inter / np.maximum(union, 1)
    assert iou.max(axis=1).min() > min_iou
    assert iou.max(axis=0).min() > min_iou
    for i, j in enumerate(iou.argmax(axis=1)):
        t, o = theirs[i], ours[j]
        assert abs(o["area"] - t["area"]) <= max(2, 0.01 * t["area"])
        np.testing.assert_allclose(o["bbox"], t["bbox"], atol=1)
        assert o["crop_box"] == t["crop_box"]
        np.testing.assert_allclose(o["point_coords"], t["point_coords"], atol=1e-6)
        assert abs(o["predicted_iou"] - t["predicted_iou"]) < 1e-4
        assert abs(o["stability_score"] - t["stability_score"]) < 1e-2


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def official_model(tiny_official):
    return tiny_official[0]


@pytest.fixture
def predictor(tiny_network):
    """A fresh predictor per test (cheap: compiled functions live on the network), so
    that a test's synthetic decoder does not leak into the next test."""
    return SAMPredictor(tiny_network)


def run_both(official_model, predictor, synthetic: bool, **options):
    theirs = SamAutomaticMaskGenerator(official_model, **options)
    ours = SAMAutomaticMaskGenerator(predictor, **options)
    if synthetic:
        use_synthetic_decoder_official(theirs)
        use_synthetic_decoder(ours)
    with torch.no_grad():
        expected = theirs.generate(IMAGE)
    return expected, ours.generate(IMAGE)


# --- parity with the official generator -----------------------------------------------------


def test_network_parity(official_model, predictor):
    # A random network: low IoU cutoff, a small stability offset so that the
    # scores are not all zero, no box NMS (every mask spans the whole image).
    expected, got = run_both(
        official_model,
        predictor,
        synthetic=False,
        points_per_side=4,
        pred_iou_thresh=0.3,
        stability_score_thresh=0.0,
        stability_score_offset=0.05,
        box_nms_thresh=1.0,
    )
    assert len(expected) >= 3
    assert_same_records(expected, got)


def test_network_parity_small_regions(official_model, predictor):
    expected, got = run_both(
        official_model,
        predictor,
        synthetic=False,
        points_per_side=3,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        min_mask_region_area=30,
    )
    assert len(expected) >= 10
    assert_same_records(expected, got)


@pytest.mark.parametrize(
    "options",
    [
        dict(points_per_side=8),
        dict(points_per_side=6, crop_n_layers=1),
        dict(points_per_side=6, min_mask_region_area=100),
        dict(points_per_side=4, crop_n_layers=1, min_mask_region_area=60, box_nms_thresh=0.5),
    ],
    ids=["grid", "crops", "small_regions", "crops_small_regions"],
)
def test_synthetic_parity(official_model, predictor, options):
    options = dict(pred_iou_thresh=0.5, stability_score_thresh=0.8, **options)
    expected, got = run_both(official_model, predictor, synthetic=True, **options)
    assert len(expected) >= 4
    assert_same_records(expected, got)
    # Same order too: the official filters and NMS order are followed step by step.
    assert [r["predicted_iou"] for r in got] == pytest.approx(
        [r["predicted_iou"] for r in expected], abs=1e-6
    )
    if options.get("crop_n_layers"):
        assert len({tuple(r["crop_box"]) for r in got}) > 1
    if options.get("min_mask_region_area"):
        # the removal changed masks: some lost holes or islands
        raw = SAMAutomaticMaskGenerator(predictor, **{**options, "min_mask_region_area": 0})
        use_synthetic_decoder(raw)

        def key(r):
            return (*r["point_coords"][0], r["predicted_iou"])

        before = {key(r): r["area"] for r in raw.generate(IMAGE)}
        assert any(before.get(key(r)) not in (None, r["area"]) for r in got)


def test_uncompressed_rle_round_trip(official_model, predictor):
    options = dict(points_per_side=4, pred_iou_thresh=0.5, stability_score_thresh=0.8)
    expected, got = run_both(
        official_model, predictor, True, output_mode="uncompressed_rle", **options
    )
    assert got and all(set(r["segmentation"]) == {"size", "counts"} for r in got)
    assert [r["segmentation"] for r in got] == [r["segmentation"] for r in expected]
    binary = SAMAutomaticMaskGenerator(predictor, **options)
    use_synthetic_decoder(binary)
    for rle_record, mask_record in zip(got, binary.generate(IMAGE), strict=True):
        mask = mu.rle_to_mask(rle_record["segmentation"])
        np.testing.assert_array_equal(mask, mask_record["segmentation"])
        assert mu.mask_to_rle(mask) == rle_record["segmentation"]
        assert mu.area_from_rle(rle_record["segmentation"]) == rle_record["area"]


def test_coco_rle(official_model, predictor, monkeypatch):
    options = dict(points_per_side=3, pred_iou_thresh=0.5, stability_score_thresh=0.8)
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        have_pycocotools = False
    else:
        have_pycocotools = True
        expected, got = run_both(official_model, predictor, True, output_mode="coco_rle", **options)
        assert got and [r["segmentation"] for r in got] == [r["segmentation"] for r in expected]
        assert isinstance(got[0]["segmentation"]["counts"], str)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ImportError, match="pip install pycocotools"):
        SAMAutomaticMaskGenerator(predictor, output_mode="coco_rle", **options)
    if not have_pycocotools:
        pytest.skip("pycocotools is not installed: only its error message was checked")


# --- progress, cancelling, inputs -----------------------------------------------------------


def test_progress_reports_every_batch(predictor):
    gen = SAMAutomaticMaskGenerator(
        predictor, points_per_side=4, points_per_batch=5, crop_n_layers=1
    )
    use_synthetic_decoder(gen)
    calls = []
    gen.generate(IMAGE, progress=lambda done, total: calls.append((done, total)))
    total = 5 * 4  # 5 crops, 16 points each in batches of 5
    assert calls == [(i, total) for i in range(total + 1)]


def test_cancel_stops_generation(predictor):
    gen = SAMAutomaticMaskGenerator(predictor, points_per_side=4, points_per_batch=5)
    use_synthetic_decoder(gen)
    decoded = []
    decode = gen.predictor.predict_input_frame

    def counting(*args, **kw):
        decoded.append(1)
        return decode(*args, **kw)

    gen.predictor.predict_input_frame = counting

    def progress(done, total):
        if done == 2:
            raise OperationCancelled("stop")

    with pytest.raises(OperationCancelled):
        gen.generate(IMAGE, progress=progress)
    assert len(decoded) == 2
    assert not gen.predictor.is_image_set  # nothing left behind


def test_predictor_image_is_restored(tiny_network):
    predictor = SAMPredictor(tiny_network)
    predictor.set_image(IMAGE[:100, :120])
    before = predictor.embedding_state()
    gen = SAMAutomaticMaskGenerator(predictor, points_per_side=2)
    use_synthetic_decoder(gen)
    gen.generate(IMAGE)
    assert predictor.embedding_state() is before


def test_other_dtypes_and_precomputed_embedding(predictor):
    gray = (IMAGE[..., 1].astype(np.uint16) * 40 + 1000).astype(np.uint16)
    options = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    gen = SAMAutomaticMaskGenerator(predictor, **options)
    got = gen.generate(gray, contrast_limits=(1000, 9000))
    rgb = to_rgb_uint8(gray, (1000, 9000))
    expected = gen.generate(rgb)
    assert_same_records(expected, got, min_iou=0.9999)
    predictor.set_image(rgb)
    embedding = predictor.embedding_state()
    again = gen.generate(rgb, embedding=embedding)
    assert_same_records(expected, again, min_iou=0.9999)


def test_accepts_network_and_rejects_bad_options(tiny_network, predictor):
    gen = SAMAutomaticMaskGenerator(tiny_network, points_per_side=2)
    assert isinstance(gen.predictor, SAMPredictor)
    assert gen.predictor.network is tiny_network
    with pytest.raises(SAMError, match="exactly one"):
        SAMAutomaticMaskGenerator(predictor, points_per_side=4, point_grids=[np.zeros((1, 2))])
    with pytest.raises(SAMError, match="one per layer"):
        SAMAutomaticMaskGenerator(
            predictor, points_per_side=None, point_grids=[np.zeros((1, 2))], crop_n_layers=1
        )
    with pytest.raises(SAMError, match="output_mode"):
        SAMAutomaticMaskGenerator(predictor, output_mode="png")
    with pytest.raises(TypeError):
        SAMAutomaticMaskGenerator(object())


def test_explicit_point_grid(official_model, predictor):
    grid = np.array([[0.25, 0.3], [0.7, 0.6], [0.5, 0.5]])
    options = dict(points_per_side=None, point_grids=[grid], pred_iou_thresh=0.0)
    options["stability_score_thresh"] = 0.8
    expected, got = run_both(official_model, predictor, True, **options)
    assert got
    assert_same_records(expected, got)


# --- helpers against the official ones ------------------------------------------------------


def random_masks(seed: int, count: int = 40):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    for t in range(count):
        h, w = rng.integers(5, 40, 2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if t % 3:
            mask = ndimage.binary_opening(mask)
        if t % 7 == 0:
            mask[:] = t % 2 == 0
        yield mask


def test_rle_and_boxes_match_official():
    for mask in random_masks(0):
        expected = amg.mask_to_rle_pytorch(torch.as_tensor(mask)[None])[0]
        assert mu.mask_to_rle(mask) == expected
        np.testing.assert_array_equal(mu.rle_to_mask(expected), mask)
        box = mu.masks_to_boxes(mask)
        np.testing.assert_array_equal(box, amg.batched_mask_to_box(torch.as_tensor(mask)))
        crop = mask[box[1] : box[3] + 1, box[0] : box[2] + 1]
        padded = np.pad(mask, ((3, 1), (2, 4)))
        assert mu.crop_mask_to_rle(crop, box[1] + 3, box[0] + 2, padded.shape) == mu.mask_to_rle(
            padded
        )


def test_stability_score_matches_official():
    logits = np.random.default_rng(1).normal(0, 3, (6, 20, 30)).astype(np.float32)
    expected = amg.calculate_stability_score(torch.as_tensor(logits), 0.0, 1.0).numpy()
    np.testing.assert_array_equal(mu.stability_score(logits, 0.0, 1.0), expected)


def test_nms_matches_torchvision_semantics():
    from torchvision.ops.boxes import batched_nms  # the shim or the real one

    rng = np.random.default_rng(2)
    for t in range(50):
        n = int(rng.integers(0, 30))
        xy = rng.integers(0, 50, (n, 2))
        boxes = np.concatenate([xy, xy + rng.integers(0, 30, (n, 2))], 1)
        scores = (rng.integers(0, 4, n) if t % 2 else rng.random(n)).astype(np.float32)
        expected = batched_nms(
            torch.as_tensor(boxes).float(), torch.as_tensor(scores), torch.zeros(n), 0.5
        )
        np.testing.assert_array_equal(mu.nms(boxes, scores, 0.5), expected.numpy())


def test_remove_small_regions_matches_official():
    rng = np.random.default_rng(3)
    for mask in random_masks(4, 60):
        full = np.pad(mask, ((int(rng.integers(0, 4)), 2), (1, int(rng.integers(0, 4)))))
        for area in (2, 5, 20):
            expected, changed_holes = amg.remove_small_regions(full, area, "holes")
            expected, changed_islands = amg.remove_small_regions(expected, area, "islands")
            got, c1 = mu.remove_small_regions(full, area, "holes")
            got, c2 = mu.remove_small_regions(got, area, "islands")
            np.testing.assert_array_equal(got, expected)
            assert (c1, c2) == (changed_holes, changed_islands)
            box = mu.masks_to_boxes(full)
            crop = full[box[1] : box[3] + 1, box[0] : box[2] + 1]
            crop, y0, x0, changed = mu.remove_small_regions_in_crop(
                crop, int(box[1]), int(box[0]), full.shape, area
            )
            pasted = np.zeros_like(full)
            pasted[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
            np.testing.assert_array_equal(pasted, expected)
            assert changed == (changed_holes or changed_islands)


def test_crop_boxes_and_grids_match_official():
    for size in [(180, 240), (1000, 1500), (513, 77)]:
        for layers in range(3):
            assert mu.generate_crop_boxes(size, layers, 512 / 1500) == amg.generate_crop_boxes(
                size, layers, 512 / 1500
            )
    for args in [(32, 0, 1), (8, 2, 2), (7, 1, 1)]:
        for a, b in zip(
            mu.build_all_layer_point_grids(*args),
            amg.build_all_layer_point_grids(*args),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
