"""evaluate_instances against hand-built cases with known answers; the training targets."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras import SAMError, evaluate_instances
from napari_sam_keras.training.distance_targets import distance_targets


def _square(labels, value, y, x, size):
    labels[y : y + size, x : x + size] = value


def test_identical_segmentations_score_one():
    truth = np.zeros((40, 40), np.int32)
    _square(truth, 1, 2, 2, 10)
    _square(truth, 2, 20, 20, 12)
    predicted = np.where(truth == 1, 7, np.where(truth == 2, 3, 0))  # other ids, same objects
    scores = evaluate_instances(predicted, truth)
    assert scores == {
        "msa": 1.0,
        "sa50": 1.0,
        "sa75": 1.0,
        "f1": 1.0,
        "precision": 1.0,
        "recall": 1.0,
    }


def test_known_partial_matches():
    truth = np.zeros((60, 60), np.int32)
    predicted = np.zeros_like(truth)
    # object A: exact; object B: IoU 0.6 (10x10 truth, 10x6 prediction inside it)
    _square(truth, 1, 0, 0, 10)
    _square(predicted, 1, 0, 0, 10)
    truth[20:30, 20:30] = 2
    predicted[20:30, 20:26] = 2
    # object C missed; one false positive D
    _square(truth, 3, 40, 40, 10)
    _square(predicted, 4, 40, 0, 10)
    scores = evaluate_instances(predicted, truth)
    # thresholds 0.5, 0.55, 0.6: A and B match (TP 2, FP 1, FN 1) -> 0.5;
    # 0.65 ... 0.95 (7 thresholds): only A (TP 1, FP 2, FN 2) -> 0.2
    assert scores["sa50"] == pytest.approx(0.5)
    assert scores["sa75"] == pytest.approx(0.2)
    assert scores["msa"] == pytest.approx((3 * 0.5 + 7 * 0.2) / 10)
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)


def test_one_to_one_matching_one_prediction_covering_two_objects():
    truth = np.zeros((20, 40), np.int32)
    truth[:, :20] = 1
    truth[:, 20:] = 2
    predicted = np.ones_like(truth)  # one object over both: IoU 0.5 with each
    scores = evaluate_instances(predicted, truth)
    # at 0.5 one of the two pairs matches (one-to-one): TP 1, FP 0, FN 1
    assert scores["sa50"] == pytest.approx(0.5)
    assert scores["sa75"] == 0.0
    assert scores["msa"] == pytest.approx(0.05)


def test_empty_cases():
    empty = np.zeros((10, 10), np.int32)
    one = empty.copy()
    one[2:5, 2:5] = 1
    assert evaluate_instances(empty, empty)["msa"] == 1.0
    assert evaluate_instances(empty, one)["msa"] == 0.0
    assert evaluate_instances(one, empty)["msa"] == 0.0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(SAMError, match="shape"):
        evaluate_instances(np.zeros((4, 4), int), np.zeros((5, 4), int))
    with pytest.raises(SAMError, match="integer"):
        evaluate_instances(np.zeros((4, 4), float), np.zeros((4, 4), int))


def test_distance_targets_are_torch_ems():
    """Hand-checkable values of torch-em's per-object distance transform."""
    labels = np.zeros((30, 30), np.int32)
    labels[5:12, 5:14] = 4  # 7 x 9 rectangle, centroid (8, 9)
    labels[20:25, 3:8] = 9
    labels[0, 29] = 5  # one pixel, below min_size
    t = distance_targets(labels, min_size=2)
    assert t.shape == (30, 30, 3) and t.dtype == np.float32
    np.testing.assert_array_equal(t[..., 0], (labels > 0) & (labels != 5))
    # outside objects both distances are 1
    assert (t[..., 1:][labels == 0] == 1).all() and (t[0, 29, 1:] == 1).all()
    # centre distance: 0 at the centroid, 1 at the farthest object pixel (the corners)
    assert t[8, 9, 1] == 0 and t[5, 5, 1] == pytest.approx(1.0, abs=1e-6)
    assert t[8, 5, 1] == pytest.approx(4 / np.hypot(3, 4), abs=1e-6)
    # boundary distance: 0 on the object's medial axis, 1 on its inner boundary
    assert t[8, 9, 2] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(t[5, 5:14, 2], 1.0, atol=1e-6)
