"""segment_volume, link_slices and segment_volume_automatic against synthetic ground truth.

The demo model (``load_model("demo_nuclei")``) was trained on synthetic nuclei
like :func:`napari_sam_keras.sample_data.sample_stack`, whose ground truth
(``with_labels=True``) is the unit ellipsoid of each blob: masks are compared
with it, not with numbers from another implementation.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CountingEncoder
from scipy import ndimage

from napari_sam_keras import (
    EmbeddingCache,
    EmbeddingStore,
    EmbeddingStoreMismatch,
    ImageError,
    OperationCancelled,
    PromptError,
    SAMError,
    SAMPredictor,
    link_slices,
    load_model,
    segment_volume,
    segment_volume_automatic,
    track_object,
)
from napari_sam_keras.processing.mask_prompts import interior_point, mask_iou
from napari_sam_keras.sample_data import sample_stack
from napari_sam_keras.segmentation.volume import PROJECTIONS


@pytest.fixture(scope="module")
def predictor():
    return SAMPredictor(load_model("demo_nuclei"))


def isolated(labels: np.ndarray) -> list[int]:
    """Ids of the ellipsoids that touch no other one (within 1 slice and 2 pixels).

    Where two nuclei touch, the summed intensity shows no edge between them, and a
    propagation by overlap can carry one into the other: the quality checks below are
    made on objects that are separate, as a user would expect to get them.
    """
    near = np.ones((3, 5, 5), bool)
    return [
        i
        for i in np.unique(labels[labels > 0])
        if not (ndimage.binary_dilation(labels == i, near) & (labels > 0) & (labels != i)).any()
    ]


@pytest.fixture(scope="module")
def stack():
    """A stack (16, 128, 128) like the sample, whose 6 ellipsoids are all clear of each other."""
    image, labels = sample_stack(n_cells=6, seed=8, with_labels=True)
    assert isolated(labels) == list(range(1, 7))
    return image, labels


@pytest.fixture(scope="module")
def sample():
    """The sample stack itself (8 ellipsoids, some touching) and its ground truth."""
    return sample_stack(with_labels=True)


@pytest.fixture(scope="module")
def cache():
    """One embedding cache for the module: each slice is embedded once."""
    return EmbeddingCache()


def z_extent(truth: np.ndarray) -> tuple[int, int]:
    zs = np.flatnonzero(truth.any(axis=(1, 2)))
    return int(zs[0]), int(zs[-1])


def objects_over(labels: np.ndarray, min_slices: int) -> list[int]:
    """Ids of the objects seen on at least ``min_slices`` slices, largest first."""
    ids = [
        i for i in np.unique(labels[labels > 0]) if np.ptp(z_extent(labels == i)) + 1 >= min_slices
    ]
    return sorted(ids, key=lambda i: -np.count_nonzero(labels == i))


def click(truth: np.ndarray) -> tuple[int, dict]:
    """A click at the middle of the object's widest slice: (z, prompts of that slice)."""
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    return z, {"point_coords": [interior_point(truth[z])], "point_labels": [1]}


@pytest.mark.parametrize("which", ["stack", "sample"])
def test_one_click_gives_the_object_in_3d(predictor, cache, which, request):
    image, labels = request.getfixturevalue(which)
    ids = isolated(labels)
    assert len(ids) >= 2
    for i in ids:
        truth = labels == i
        z, prompt = click(truth)
        got = segment_volume(predictor, image, {z: prompt}, embeddings=cache)
        assert got.dtype == bool and got.shape == image.shape
        iou = mask_iou(got, truth)
        assert iou >= 0.8, f"object {i}: 3D IoU {iou:.2f}"
        low, high = z_extent(truth)
        written = np.flatnonzero(got.any(axis=(1, 2)))
        assert written.min() >= low and written.max() <= high, (i, written, (low, high))
        # nowhere near another object
        assert np.count_nonzero(got & (labels > 0) & ~truth) < 0.02 * np.count_nonzero(truth)


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_each_projection_carries_the_object(predictor, stack, cache, projection):
    image, labels = stack
    i = objects_over(labels, 8)[0]
    truth = labels == i
    z, prompt = click(truth)
    got = segment_volume(predictor, image, {z: prompt}, projection=projection, embeddings=cache)
    low, high = z_extent(truth)
    reached = np.flatnonzero(got.any(axis=(1, 2)))
    assert reached.min() <= z - 2 and reached.max() >= z + 2, (projection, reached)
    assert reached.min() >= low and reached.max() <= high
    assert mask_iou(got, truth) >= 0.8, projection


def test_two_prompted_slices_far_apart_fill_the_gap(predictor, stack, cache):
    image, labels = stack
    i = objects_over(labels, 9)[0]
    truth = labels == i
    low, high = z_extent(truth)
    a, b = low + 1, high - 1
    prompts = {
        z: {
            "box": np.array(
                [*np.argwhere(truth[z]).min(0)[::-1], *np.argwhere(truth[z]).max(0)[::-1]]
            )
        }
        for z in (a, b)
    }
    calls = []
    got = segment_volume(
        predictor,
        image,
        prompts,
        iou_threshold=0.0,  # only the prompted slices' own gap and ends: no early stop
        embeddings=cache,
        progress=lambda done, total: calls.append((done, total)),
    )
    for z in range(a, b + 1):
        assert mask_iou(got[z], truth[z]) >= 0.75, z
    # progress: starts at 0, never goes back, ends at its total
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1]
    assert all(d1 < d2 for (d1, _), (d2, _) in zip(calls, calls[1:], strict=False))
    assert len({t for _, t in calls}) == 1


def test_the_gap_middle_uses_both_neighbours(predictor, stack, cache):
    image, labels = stack
    truth = labels == objects_over(labels, 9)[0]
    low, high = z_extent(truth)
    a = low + 1
    b = a + 4  # gap of 3: one slice from each side, the middle one from both
    prompts = {z: click(truth[z : z + 1])[1] for z in (a, b)}
    got = segment_volume(predictor, image, prompts, embeddings=cache)
    for z in range(a, b + 1):
        assert mask_iou(got[z], truth[z]) >= 0.75, z


def test_a_stop_marker_stops(predictor, stack, cache):
    image, labels = stack
    truth = labels == objects_over(labels, 9)[0]
    z, prompt = click(truth)
    low, high = z_extent(truth)
    assert z + 2 <= high
    stop = {"point_coords": [[3.0, 3.0]], "point_labels": [0]}
    got = segment_volume(predictor, image, {z: prompt, z + 2: stop}, embeddings=cache)
    reached = np.flatnonzero(got.any(axis=(1, 2)))
    assert reached.max() == z + 1
    assert reached.min() < z  # the other direction is not affected
    free = segment_volume(predictor, image, {z: prompt}, embeddings=cache)
    assert np.array_equal(got[: z + 2], free[: z + 2])


def test_a_rerun_with_the_same_cache_embeds_nothing(predictor, stack):
    image, labels = stack
    predictor = SAMPredictor(predictor.network)  # its own image; the compiled parts are shared
    encoder = predictor.image_encoder
    embedded = []
    network_call = encoder.compiled  # the image encoder's forward pass itself

    def counting_call(batch):
        embedded.append(batch.shape)
        return network_call(batch)

    encoder.compiled = counting_call
    try:
        truth = labels == objects_over(labels, 6)[0]
        z, prompt = click(truth)
        low, high = z_extent(truth)
        for store in (EmbeddingCache(), {}):
            embedded.clear()
            first = segment_volume(predictor, image, {z: prompt}, embeddings=store)
            n = len(embedded)
            # only the visited slices: the object's and at most one beyond each end
            assert 3 <= n <= high - low + 3
            assert len(store) == n
            second = segment_volume(predictor, image, {z: prompt}, embeddings=store)
            assert len(embedded) == n  # nothing new
            assert np.array_equal(first, second)
    finally:
        encoder.compiled = network_call


def test_a_store_or_its_path_is_accepted_and_changes_no_result(predictor, stack, tmp_path):
    """embeddings= takes what SAMPredictor takes: a store's path or an EmbeddingStore too."""
    image, labels = stack
    predictor = SAMPredictor(predictor.network)  # its own image; the compiled parts are shared
    truth = labels == objects_over(labels, 6)[0]
    z, prompt = click(truth)
    plain = segment_volume(predictor, image, {z: prompt})
    path = tmp_path / "stack.zarr"
    with CountingEncoder(predictor) as count:
        stored = segment_volume(predictor, image, {z: prompt}, embeddings=path)
        computed = count.calls
        assert computed >= 3
        again = segment_volume(predictor, image, {z: prompt}, embeddings=EmbeddingStore(path))
        assert count.calls == computed  # every slice came from the store
        # tracking reads the same store (the same stack, the same conversion)
        tracked = track_object(predictor, image, {z: prompt}, embeddings=path)
    np.testing.assert_array_equal(stored, plain)
    np.testing.assert_array_equal(again, plain)
    np.testing.assert_array_equal(tracked, track_object(predictor, image, {z: prompt}))
    with pytest.raises(EmbeddingStoreMismatch):  # bound to this stack, not another one
        segment_volume(predictor, image[::-1], {z: prompt}, embeddings=path)


def test_cancel_stops_and_restores_the_predictor_image(predictor, stack, cache):
    image, labels = stack
    truth = labels == objects_over(labels, 6)[0]
    z, prompt = click(truth)
    predictor.set_image(image[0], contrast_limits=(0, 4000))
    before = predictor.embedding_state()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 2:
            raise OperationCancelled

    with pytest.raises(OperationCancelled):
        segment_volume(predictor, image, {z: prompt}, embeddings=cache, progress=progress)
    assert seen[-1] == 2
    assert predictor.embedding_state() is before


def test_rgb_and_uint8_volumes(predictor, stack):
    image, labels = stack
    truth = labels == objects_over(labels, 6)[0]
    z, prompt = click(truth)
    low, high = float(image.min()), float(image.max())
    grey8 = np.round((image - low) * (255.0 / (high - low))).astype(np.uint8)
    rgb = np.repeat(grey8[..., None], 3, axis=-1)
    from_rgb = segment_volume(predictor, rgb, {z: prompt})
    assert mask_iou(from_rgb, truth) >= 0.8


@pytest.mark.parametrize(
    ("volume", "prompts", "kwargs", "error", "match"),
    [
        (np.zeros((32, 32)), {0: {"box": [1, 1, 5, 5]}}, {}, ImageError, "stack"),
        (np.zeros((2, 3, 32, 32)), {0: {"box": [1, 1, 5, 5]}}, {}, ImageError, "stack"),
        (np.zeros((4, 32, 32)), {}, {}, PromptError, "No prompts"),
        (np.zeros((4, 32, 32)), {4: {"box": [1, 1, 5, 5]}}, {}, PromptError, "outside the stack"),
        (np.zeros((4, 32, 32)), {-1: {"box": [1, 1, 5, 5]}}, {}, PromptError, "outside the stack"),
        (
            np.zeros((4, 32, 32)),
            {1: {"point_coords": [[40, 3]], "point_labels": [1]}},
            {},
            PromptError,
            "outside the image",
        ),
        (np.zeros((4, 32, 32)), {1: {"box": [1, 1, 50, 5]}}, {}, PromptError, "outside the image"),
        (np.zeros((4, 32, 32)), {1: {"points": [[1, 1]]}}, {}, PromptError, "Unknown prompt keys"),
        (
            np.zeros((4, 32, 32)),
            {1: {"point_coords": [[4, 3]], "point_labels": [0]}},
            {},
            PromptError,
            "stop markers",
        ),
        (
            np.zeros((4, 32, 32)),
            {1: {"box": [1, 1, 5, 5]}},
            {"projection": "blob"},
            SAMError,
            "projection",
        ),
        (np.zeros((4, 32, 32)), {1: {"box": [1, 1, 5, 5]}}, {"iou_threshold": 2}, SAMError, "iou"),
        (np.full((4, 32, 32), np.nan), {1: {"box": [1, 1, 5, 5]}}, {}, ImageError, "NaN"),
    ],
)
def test_bad_input_is_a_clear_error(predictor, volume, prompts, kwargs, error, match):
    with pytest.raises(error, match=match):
        segment_volume(predictor, volume, prompts, **kwargs)


# --- 3D automatic segmentation -----------------------------------------------------------


def shuffled_slices(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each slice's labels renumbered at random: what a per-slice 2D segmentation gives."""
    out = np.zeros_like(labels)
    for z in range(len(labels)):
        ids = np.unique(labels[z][labels[z] > 0])
        new = rng.permutation(np.arange(1, len(ids) + 1) + 100 * z % 7)
        for i, j in zip(ids, new, strict=True):
            out[z][labels[z] == i] = j
    return out


def test_link_slices_joins_a_moving_disc_and_keeps_neighbours_apart():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    truth = np.zeros((10, 64, 64), np.int32)
    for z in range(10):
        truth[z][(yy - 20) ** 2 + (xx - 15 - z) ** 2 < 64] = 1  # drifts 1 px per slice
        truth[z][(yy - 20) ** 2 + (xx - 34 - z) ** 2 < 64] = 2  # touches disc 1's side
        if 3 <= z <= 5:
            truth[z][(yy - 50) ** 2 + (xx - 50) ** 2 < 25] = 3
    truth[7][(yy - 50) ** 2 + (xx - 10) ** 2 < 16] = 4  # on one slice only
    got = link_slices(shuffled_slices(truth, rng))
    assert got.dtype == np.int32
    pairs = {(int(a), int(b)) for a, b in zip(truth.ravel(), got.ravel(), strict=True)}
    assert len(pairs) == 5 and len({b for _, b in pairs}) == 5  # one-to-one with the truth
    assert sorted(np.unique(got)) == [0, 1, 2, 3, 4]
    assert got[0][truth[0] == 1].min() == 1  # ids follow first appearance
    dropped = link_slices(shuffled_slices(truth, rng), min_slices=2)
    assert len(np.unique(dropped)) == 4 and not dropped[7][truth[7] == 4].any()
    # a jump larger than the objects: no overlap, two objects
    jump = truth.copy()
    jump[5:] = np.roll(truth[5:], 30, axis=1)
    assert len(np.unique(link_slices(jump)[truth > 0])) > 4


def test_link_slices_iou_threshold_decides():
    a = np.zeros((2, 20, 20), np.int32)
    a[0, 0:10, 0:10] = 1
    a[1, 0:10, 4:14] = 1  # IoU 60 / 140 = 0.43
    assert len(np.unique(link_slices(a, iou_threshold=0.4))) == 2
    assert len(np.unique(link_slices(a, iou_threshold=0.5))) == 3


def test_link_slices_bad_input():
    with pytest.raises(ImageError):
        link_slices(np.zeros((4, 4), np.int32))
    with pytest.raises(ImageError):
        link_slices(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(SAMError):
        link_slices(np.zeros((2, 4, 4), np.int32), iou_threshold=0)
    with pytest.raises(SAMError):
        link_slices(np.zeros((2, 4, 4), np.int32), min_slices=0)


def test_automatic_3d_gives_one_label_per_ellipsoid(predictor, stack, cache):
    image, labels = stack
    calls = []
    got = segment_volume_automatic(
        predictor,
        image,
        min_slices=2,
        embeddings=cache,
        progress=lambda done, total: calls.append((done, total)),
        points_per_side=16,
        pred_iou_thresh=0.8,
        stability_score_thresh=0.85,
        min_mask_region_area=20,
    )
    assert got.dtype == np.int32 and got.shape == image.shape
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1]
    assert all(d1 < d2 for (d1, _), (d2, _) in zip(calls, calls[1:], strict=False))
    predicted = [j for j in np.unique(got) if j]
    truths = [i for i in np.unique(labels) if i]
    # every ellipsoid is one predicted label, and every predicted label one ellipsoid
    matched = {}
    for i in truths:
        ious = {j: mask_iou(got == j, labels == i) for j in predicted}
        best = max(ious, key=ious.get)
        assert ious[best] >= 0.6, (i, ious[best])
        matched[i] = best
    assert len(set(matched.values())) == len(truths)
    assert len(predicted) == len(truths), (len(predicted), len(truths))
