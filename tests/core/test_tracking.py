"""track_object on the sample time-lapse, against its ground truth, with the demo model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras import (
    EmbeddingCache,
    ImageError,
    PromptError,
    SAMError,
    SAMPredictor,
    load_model,
    track_object,
)
from napari_sam_keras.processing.mask_prompts import interior_point, mask_iou
from napari_sam_keras.sample_data import sample_timelapse


@pytest.fixture(scope="module")
def predictor():
    return SAMPredictor(load_model("demo_nuclei"))


@pytest.fixture(scope="module")
def timelapse():
    """The sample time-lapse (12, 192, 192) and its ground truth."""
    return sample_timelapse(with_labels=True)


@pytest.fixture(scope="module")
def cache():
    return EmbeddingCache()


def click(mask: np.ndarray) -> dict:
    return {"point_coords": [interior_point(mask)], "point_labels": [1]}


def test_tracking_follows_every_nucleus(predictor, timelapse, cache):
    frames, labels = timelapse
    ids = [i for i in np.unique(labels) if i]
    assert len(ids) >= 8
    for i in ids:
        truth = labels == i
        got = track_object(predictor, frames, {0: click(truth[0])}, embeddings=cache)
        assert got.dtype == bool and got.shape == frames.shape
        ious = [mask_iou(got[t], truth[t]) for t in range(len(frames))]
        assert min(ious) >= 0.7, (i, np.round(ious, 2))


def test_the_nuclei_move_enough_to_need_following(timelapse):
    """Guard for the test above: for most nuclei, the first frame's mask left in place falls
    below the IoU the tracking test asks for in some later frame."""
    _, labels = timelapse
    ids = [i for i in np.unique(labels) if i]
    static = [
        min(mask_iou(labels[0] == i, labels[t] == i) for t in range(len(labels))) for i in ids
    ]
    assert np.mean(np.array(static) < 0.7) >= 0.7, np.round(static, 2)


def test_tracking_starts_at_the_first_prompted_frame_and_takes_corrections(
    predictor, timelapse, cache
):
    frames, labels = timelapse
    truth = labels == 1
    calls = []
    got = track_object(
        predictor,
        frames,
        {4: click(truth[4]), 8: click(truth[8])},
        embeddings=cache,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert not got[:4].any()
    assert all(mask_iou(got[t], truth[t]) >= 0.7 for t in range(4, len(frames)))
    assert calls[0] == (0, len(frames) - 4) and calls[-1] == (len(frames) - 4,) * 2


def test_a_stop_marker_ends_the_track(predictor, timelapse, cache):
    frames, labels = timelapse
    truth = labels == 2
    stop = {"point_coords": [[1.0, 1.0]], "point_labels": [0]}
    got = track_object(predictor, frames, {0: click(truth[0]), 5: stop}, embeddings=cache)
    reached = np.flatnonzero(got.any(axis=(1, 2)))
    assert list(reached) == [0, 1, 2, 3, 4]


def test_the_motion_model_is_what_follows_a_fast_object(predictor):
    """A disc moving 6 px per frame (radius 14): the unshifted previous mask overlaps the new
    one with IoU 0.57 only; shifted by the estimated motion it overlaps far better."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    frames, truth = [], []
    for t in range(9):
        disc = (yy - 64) ** 2 + (xx - 20 - 6 * t) ** 2 < 14**2
        truth.append(disc)
        frames.append(300 + 2000 * disc + rng.normal(0, 30, disc.shape))
    frames, truth = np.array(frames), np.array(truth)
    assert 0.5 < mask_iou(truth[0], truth[1]) < 0.6
    # two prompted frames give the first motion estimate
    prompts = {0: click(truth[0]), 1: click(truth[1])}
    got = track_object(predictor, frames, prompts, iou_threshold=0.7)
    ious = [mask_iou(got[t], truth[t]) for t in range(len(frames))]
    assert min(ious) >= 0.7, np.round(ious, 2)
    # motion_smoothing=1 never updates the motion (always 0): the track stops at frame 2
    still = track_object(predictor, frames, prompts, iou_threshold=0.7, motion_smoothing=1.0)
    assert list(np.flatnonzero(still.any(axis=(1, 2)))) == [0, 1]


@pytest.mark.parametrize(
    ("frames", "prompts", "kwargs", "error"),
    [
        (np.zeros((32, 32)), {0: {"box": [1, 1, 5, 5]}}, {}, ImageError),
        (np.zeros((3, 32, 32)), {3: {"box": [1, 1, 5, 5]}}, {}, PromptError),
        (np.zeros((3, 32, 32)), {0: {"box": [1, 1, 5, 50]}}, {}, PromptError),
        (np.zeros((3, 32, 32)), {0: {"box": [1, 1, 5, 5]}}, {"projection": "x"}, SAMError),
        (np.zeros((3, 32, 32)), {0: {"box": [1, 1, 5, 5]}}, {"motion_smoothing": 1.5}, SAMError),
    ],
)
def test_bad_input_is_a_clear_error(predictor, frames, prompts, kwargs, error):
    with pytest.raises(error):
        track_object(predictor, frames, prompts, **kwargs)
