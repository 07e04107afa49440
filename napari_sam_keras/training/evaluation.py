"""How good a model is on annotated images: interactive prompts and instance segmentation.

* :func:`evaluate_prompts`: the mean IoU of every annotated object segmented
  from one positive point, from its box, and after each of N corrective
  clicks, as micro-sam's interactive evaluation reports it.
* :func:`evaluate_instances`: the mean segmentation accuracy (mSA) of an
  instance segmentation against the truth, averaged over the IoU thresholds
  0.5, 0.55, ..., 0.95, with SA50, SA75 and F1 (micro-sam's metric, elf's
  ``mean_segmentation_accuracy``).

Prompts are reproducible: the point of an object is a random pixel of the
object eroded by 2 pixels (the whole object when that is empty), drawn with
a generator seeded by ``seed`` and the object's order; a corrective click
goes to the pixel farthest from the edge of the larger error (missed pixels
get a positive click, false positives a negative one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import SAMError
from ..processing.mask_prompts import interior_point
from .data import RawPlane, check_training_data
from .prompt_sampling import first_point, object_box

#: IoU thresholds of the mean segmentation accuracy.
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _corrective_click(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int]:
    missed = truth & ~predicted
    extra = predicted & ~truth
    if missed.sum() >= extra.sum():
        return interior_point(missed if missed.any() else truth), 1
    return interior_point(extra), 0


def object_ious(
    predictor: Any, labels: np.ndarray, seed: int, corrective_clicks: int = 0
) -> dict[str, list[float]]:
    """Per object of ``labels`` (the predictor's image is set): IoU from a point, from a box
    and after each corrective click.  Keys ``point``, ``box``, ``clicks`` (lists of lists)."""
    out: dict[str, list] = {"point": [], "box": [], "clicks": []}
    ids = np.unique(labels[labels > 0])
    for order, object_id in enumerate(ids):
        truth = labels == object_id
        rng = np.random.default_rng([seed, order])
        point = first_point(truth, rng)[None].astype(np.float64)
        masks, scores, low_res = predictor.predict(point, np.ones(1), multimask_output=True)
        best = int(np.argmax(scores))
        mask, logits = masks[best], low_res[best]
        out["point"].append(_iou(mask, truth))
        box_mask, _ = predictor.predict_best(box=object_box(truth), multimask_output=False)
        out["box"].append(_iou(box_mask, truth))
        points, point_labels, after = point, [1], []
        for _ in range(corrective_clicks):
            click, label = _corrective_click(mask, truth)
            points = np.concatenate([points, click[None]])
            point_labels = [*point_labels, label]
            masks, _, low_res = predictor.predict(
                points, np.asarray(point_labels), mask_input=logits, multimask_output=False
            )
            mask, logits = masks[0], low_res[0]
            after.append(_iou(mask, truth))
        out["clicks"].append(after)
    return out


def mean_prompt_ious(per_object: dict[str, list]) -> dict[str, Any]:
    """The means of :func:`object_ious` results (NaN without objects)."""
    clicks = np.asarray(per_object["clicks"], np.float64)
    return {
        "point": float(np.mean(per_object["point"])) if per_object["point"] else float("nan"),
        "box": float(np.mean(per_object["box"])) if per_object["box"] else float("nan"),
        "clicks": [float(v) for v in clicks.mean(axis=0)] if clicks.size else [],
        "objects": len(per_object["point"]),
    }


def evaluate_prompts(
    model: Any,
    images: Any,
    labels: Any,
    *,
    corrective_clicks: int = 3,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Mean IoU of the annotated objects segmented from prompts.

    Args:
        model: a network (:func:`~napari_sam_keras.load_model`) or a model name/path.
        images, labels: lists of 2D images (or (Z, Y, X) stacks, slice by
            slice) with their instance labels, as for
            :func:`~napari_sam_keras.finetune`.
        corrective_clicks: how many corrective clicks follow the first point.
        seed: fixes the points drawn inside the objects.
        progress: ``progress(done, total)`` per plane; may raise ``OperationCancelled``.

    Returns:
        ``{"point": mean IoU from one positive point (the best of the three
        masks by predicted IoU), "box": from the bounding box, "clicks": [mean
        IoU after 1, 2, ... corrective clicks, each with the previous mask as
        mask input], "objects": how many objects}``.
    """
    from ..segmentation.predictor import SAMPredictor, as_network

    planes = check_training_data(images, labels)
    network = _network(model)
    predictor = SAMPredictor(as_network(network), warm_up=False)
    return mean_prompt_ious(_planes_ious(predictor, planes, seed, corrective_clicks, progress))


def _network(model: Any) -> Any:
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        from ..model.loading import load_model

        return load_model(model)
    return model


def _planes_ious(predictor, planes: list[RawPlane], seed, clicks, progress, embeddings=None):
    total: dict[str, list] = {"point": [], "box": [], "clicks": []}
    with_objects = [p for p in planes if p.labels.any()]
    for done, plane in enumerate(with_objects, start=1):
        if embeddings is not None:
            predictor.set_embedding(embeddings(plane))
        else:
            predictor.set_image(plane.image, contrast_limits=plane.contrast_limits)
        result = object_ious(predictor, plane.labels, seed + done, clicks)
        for key in total:
            total[key].extend(result[key])
        if progress is not None:
            progress(done, len(with_objects))
    return total


def _check_label_image(name: str, array: Any) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise SAMError(f"{name} must be an integer label image, not {array.dtype}.")
    return array


def evaluate_instances(predicted: Any, truth: Any) -> dict[str, float]:
    """Mean segmentation accuracy of instance labels ``predicted`` against ``truth``.

    Objects are matched one to one (the matching that maximises the summed
    IoU); at each IoU threshold t in 0.5, 0.55, ..., 0.95 a matched pair with
    IoU >= t is a true positive, every other predicted object a false
    positive and every other true object a false negative, and the
    segmentation accuracy is TP / (TP + FP + FN).

    Returns ``{"msa": mean over the thresholds, "sa50", "sa75", "f1": 2 TP /
    (2 TP + FP + FN) at 0.5, "precision", "recall" at 0.5}``.  Two empty
    label images score 1.
    """
    predicted = _check_label_image("predicted", predicted)
    truth = _check_label_image("truth", truth)
    if predicted.shape != truth.shape:
        raise SAMError(
            f"predicted labels {predicted.shape} and true labels {truth.shape} differ in shape."
        )
    ious = _iou_matrix(predicted, truth)
    n_pred, n_true = ious.shape
    if n_pred and n_true:
        rows, cols = linear_sum_assignment(-ious)
        matched = ious[rows, cols]
    else:
        matched = np.zeros(0)
    scores = {}
    for t in THRESHOLDS:
        tp = int((matched >= t - 1e-9).sum())
        fp, fn = n_pred - tp, n_true - tp
        scores[t] = (tp, fp, fn)

    def sa(t: float) -> float:
        tp, fp, fn = scores[t]
        return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)

    tp, fp, fn = scores[0.5]
    return {
        "msa": float(np.mean([sa(t) for t in THRESHOLDS])),
        "sa50": sa(0.5),
        "sa75": sa(0.75),
        "f1": 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn),
        "precision": 1.0 if tp + fp == 0 else tp / (tp + fp),
        "recall": 1.0 if tp + fn == 0 else tp / (tp + fn),
    }


def _iou_matrix(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(predicted objects, true objects) IoU, from the overlap counts of every label pair."""
    pred_ids, pred_index = np.unique(predicted, return_inverse=True)
    true_ids, true_index = np.unique(truth, return_inverse=True)
    overlap = np.zeros((len(pred_ids), len(true_ids)), np.int64)
    np.add.at(overlap, (pred_index.ravel(), true_index.ravel()), 1)
    pred_sizes, true_sizes = overlap.sum(axis=1), overlap.sum(axis=0)
    union = pred_sizes[:, None] + true_sizes[None, :] - overlap
    ious = overlap / np.maximum(union, 1)
    keep_pred, keep_true = pred_ids != 0, true_ids != 0
    return ious[np.ix_(keep_pred, keep_true)]
