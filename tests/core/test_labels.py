"""masks_to_labels: overlap policies and label ids."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_sam_keras import masks_to_labels
from napari_sam_keras.errors import SAMError
from napari_sam_keras.processing import masks as mu


def box_mask(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


SHAPE = (20, 30)
BIG = box_mask(SHAPE, 0, 20, 0, 20)  # area 400
SMALL = box_mask(SHAPE, 5, 10, 5, 10)  # area 25, inside BIG
MEDIUM = box_mask(SHAPE, 8, 16, 15, 30)  # area 120, overlaps BIG


def records(masks, ious):
    return [
        {"segmentation": m, "area": int(m.sum()), "predicted_iou": s}
        for m, s in zip(masks, ious, strict=True)
    ]


def test_larger_first_keeps_small_objects_on_top():
    labels = masks_to_labels([SMALL, BIG, MEDIUM])
    assert labels.dtype == np.int32 and labels.shape == SHAPE
    # ids follow the input order: SMALL=1, BIG=2, MEDIUM=3
    assert (labels[SMALL] == 1).all()
    assert (labels[MEDIUM] == 3).all()  # MEDIUM (smaller than BIG) is painted over BIG
    assert (labels[BIG & ~SMALL & ~MEDIUM] == 2).all()
    assert (labels[~(BIG | SMALL | MEDIUM)] == 0).all()


def test_equal_areas_later_wins_and_arrays_work():
    a = box_mask(SHAPE, 0, 10, 0, 10)
    b = box_mask(SHAPE, 5, 15, 5, 15)
    labels = masks_to_labels(np.stack([a, b]))
    assert labels[7, 7] == 2 and labels[0, 0] == 1 and labels[14, 14] == 2


def test_score_policy():
    recs = records([BIG, SMALL, MEDIUM], [0.99, 0.5, 0.7])
    labels = masks_to_labels(recs, overlap="score")
    assert (labels[BIG] == 1).all()  # the best score covers everything it overlaps
    assert (labels[MEDIUM & ~BIG] == 3).all()
    assert not (labels == 2).any()  # SMALL is hidden: its id is unused
    # explicit scores override the records' and work for plain masks
    labels = masks_to_labels([BIG, SMALL], overlap="score", scores=[0.1, 0.2])
    assert (labels[SMALL] == 2).all()
    # ties: the earlier mask wins
    labels = masks_to_labels([SMALL, BIG], overlap="score", scores=[0.5, 0.5])
    assert (labels[SMALL] == 1).all()
    with pytest.raises(SAMError, match="predicted_iou"):
        masks_to_labels([BIG, SMALL], overlap="score")


def test_first_and_last_policies():
    assert (masks_to_labels([BIG, SMALL], overlap="first")[SMALL] == 1).all()
    assert (masks_to_labels([BIG, SMALL], overlap="last")[SMALL] == 2).all()
    assert (masks_to_labels([SMALL, BIG], overlap="last")[SMALL] == 2).all()


def test_rle_records_and_deterministic_ids():
    masks = [BIG, SMALL, MEDIUM]
    binary = masks_to_labels(records(masks, [0.9, 0.8, 0.7]))
    rle = [{"segmentation": mu.mask_to_rle(m), "predicted_iou": 0.5} for m in masks]
    np.testing.assert_array_equal(masks_to_labels(rle), binary)
    np.testing.assert_array_equal(masks_to_labels(rle), binary)
    assert set(np.unique(binary)) == {0, 1, 2, 3}


def test_coco_rle_records():
    pytest.importorskip("pycocotools")
    rle = [{"segmentation": mu.coco_encode_rle(mu.mask_to_rle(m))} for m in (BIG, SMALL)]
    labels = masks_to_labels(rle)
    assert (labels[SMALL] == 2).all() and (labels[BIG & ~SMALL] == 1).all()


def test_coco_rle_without_pycocotools(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    rle = {"size": list(SHAPE), "counts": "PPYo0"}
    with pytest.raises(ImportError, match="pip install pycocotools"):
        masks_to_labels([{"segmentation": rle}])


def test_shapes():
    empty = masks_to_labels([], shape=SHAPE)
    assert empty.shape == SHAPE and empty.dtype == np.int32 and not empty.any()
    with pytest.raises(SAMError, match="shape"):
        masks_to_labels([])
    with pytest.raises(SAMError, match="disagree"):
        masks_to_labels([BIG], shape=(10, 10))
    with pytest.raises(SAMError, match="disagree"):
        masks_to_labels([BIG, np.zeros((5, 5), bool)])
    with pytest.raises(SAMError, match="overlap"):
        masks_to_labels([BIG], overlap="random")
    single = masks_to_labels(SMALL)
    assert (single[SMALL] == 1).all()
