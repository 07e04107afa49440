"""Fine-tuning data: checking image/label pairs, and 2D planes in the model's input frame.

Images and labels are lists of 2D arrays (grayscale or RGB) or of (Z, Y, X)
stacks used slice by slice, with instance labels (0 = background).  Every
problem is found by :func:`check_training_data` before any work starts and
reported as one :class:`~napari_sam_keras.errors.TrainingDataError`.

A :class:`TrainingPlane` holds one 2D plane as the network sees it: the RGB
uint8 image resized so its longest side is the model's input size, and the
labels resized (nearest) the same way and padded to the square input.  All
prompts and targets of the training loop live in that frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TrainingDataError
from ..processing.images import preprocess_shape, resize_longest_side, to_rgb_uint8

#: The augmented variants of a plane: (quarter turns, flip left-right), all valid for
#: a frozen encoder as well (each variant gets its own embedding).
VARIANTS: tuple[tuple[int, bool], ...] = ((0, False), (1, False), (0, True), (2, True))


@dataclass
class RawPlane:
    """One checked 2D plane: image (Y, X) or (Y, X, C), labels (Y, X), where it came from."""

    image: np.ndarray
    labels: np.ndarray
    contrast_limits: tuple[float, float] | None
    source: tuple[int, int | None]  # (index in the list, z or None)


@dataclass
class TrainingPlane:
    """A plane in the model frame (one augmented variant of a :class:`RawPlane`)."""

    resized: np.ndarray  # (h, w, 3) uint8, longest side = image_size
    labels: np.ndarray  # (S, S) int32, padded with 0
    input_size: tuple[int, int]
    object_ids: np.ndarray
    source: tuple[int, int | None]
    variant: tuple[int, bool]
    distance_target: np.ndarray | None = field(default=None, repr=False)
    low_res_targets: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def low_res_target(self, object_id: int, low_res_size: int) -> np.ndarray:
        """The object as a (m, m) bool mask on the low-res grid (area fraction >= 1/2)."""
        if object_id not in self.low_res_targets:
            s = self.labels.shape[0]
            f = s // low_res_size
            frac = (self.labels == object_id).reshape(low_res_size, f, low_res_size, f)
            self.low_res_targets[object_id] = frac.mean(axis=(1, 3)) >= 0.5
        return self.low_res_targets[object_id]


def _as_list(values: Any, what: str) -> list[Any]:
    if isinstance(values, np.ndarray):
        return [values]
    if isinstance(values, Sequence) and not isinstance(values, str | bytes):
        return list(values)
    raise TrainingDataError(
        f"{what} must be a list of arrays (2D images or (Z, Y, X) stacks), not "
        f"{type(values).__name__}."
    )


def check_training_data(images: Any, labels: Any) -> list[RawPlane]:
    """Every 2D plane of the pairs, checked; raises one clear error for the first bad pair."""
    image_list = _as_list(images, "images")
    label_list = _as_list(labels, "labels")
    if len(image_list) != len(label_list):
        raise TrainingDataError(
            f"{len(image_list)} images but {len(label_list)} label images: give one label "
            "image per image."
        )
    if not image_list:
        raise TrainingDataError("No training images given.")
    planes: list[RawPlane] = []
    for index, (image, label) in enumerate(zip(image_list, label_list, strict=True)):
        planes.extend(_planes_of_pair(index, np.asarray(image), np.asarray(label)))
    if not any(p.labels.any() for p in planes):
        raise TrainingDataError(
            "The labels contain no object at all (every pixel is 0): annotate some objects first."
        )
    return planes


def _planes_of_pair(index: int, image: np.ndarray, label: np.ndarray) -> list[RawPlane]:
    name = f"Pair {index}"
    if label.dtype == bool or not np.issubdtype(label.dtype, np.integer):
        raise TrainingDataError(
            f"{name}: the labels are {label.dtype}, not integers: give instance labels "
            "(0 = background, 1, 2, ... one id per object)."
        )
    if label.ndim not in (2, 3):
        raise TrainingDataError(
            f"{name}: labels of shape {label.shape}; expected (Y, X) or a (Z, Y, X) stack."
        )
    if label.size and label.min() < 0:
        raise TrainingDataError(f"{name}: the labels have negative ids.")
    rgb = image.ndim == label.ndim + 1 and image.shape[-1] in (3, 4)
    if (image.shape[:-1] if rgb else image.shape) != label.shape:
        raise TrainingDataError(
            f"{name}: image of shape {image.shape} but labels of shape {label.shape}: they "
            "must cover the same pixels."
        )
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise TrainingDataError(f"{name}: the image has dtype {image.dtype}, not numbers.")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise TrainingDataError(f"{name}: the image contains NaN or infinite values.")
    if min(label.shape[-2:]) < 8:
        raise TrainingDataError(f"{name}: the image is too small ({label.shape}).")
    if label.ndim == 2:
        return [RawPlane(image, label, None, (index, None))]
    # a stack: one contrast for all its slices, like napari's display of the stack
    limits = (float(image.min()), float(image.max())) if image.dtype != np.uint8 else None
    return [RawPlane(image[z], label[z], limits, (index, z)) for z in range(label.shape[0])]


def _variant(array: np.ndarray, variant: tuple[int, bool]) -> np.ndarray:
    turns, flip = variant
    out = np.rot90(array, turns, axes=(0, 1)) if turns else array
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _resize_labels(labels: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize, sampling each output pixel at its centre."""
    h, w = labels.shape
    ih, iw = input_size
    rows = np.clip(((np.arange(ih) + 0.5) * (h / ih)).astype(np.int64), 0, h - 1)
    cols = np.clip(((np.arange(iw) + 0.5) * (w / iw)).astype(np.int64), 0, w - 1)
    return labels[np.ix_(rows, cols)]


def model_frame_plane(
    plane: RawPlane, image_size: int, variant: tuple[int, bool] = (0, False)
) -> TrainingPlane:
    """``plane`` (one augmented variant) in the model's input frame."""
    image = _variant(plane.image, variant)
    labels = _variant(plane.labels, variant).astype(np.int32, copy=False)
    rgb = to_rgb_uint8(image, plane.contrast_limits)
    resized = resize_longest_side(rgb, image_size)
    input_size = preprocess_shape(labels.shape[0], labels.shape[1], image_size)
    padded = np.zeros((image_size, image_size), np.int32)
    padded[: input_size[0], : input_size[1]] = _resize_labels(labels, input_size)
    ids, counts = np.unique(padded[padded > 0], return_counts=True)
    # an object smaller than one low-res cell (4 x 4 input pixels) gives no mask target
    ids = ids[counts >= 16]
    return TrainingPlane(
        resized=resized,
        labels=padded,
        input_size=input_size,
        object_ids=ids,
        source=plane.source,
        variant=variant,
    )


def split_validation(
    planes: list[RawPlane], validation: float, rng: np.random.Generator
) -> tuple[list[RawPlane], list[RawPlane]]:
    """(training, validation) planes: a ``validation`` fraction of the planes with objects.

    Whole images go to one side (the slices of one stack stay together) when
    there are several images; one image alone is split by slices.  Without
    enough planes the validation set is empty.
    """
    with_objects = [p for p in planes if p.labels.any()]
    if validation <= 0 or len(with_objects) < 2:
        return planes, []
    groups: dict[int, list[RawPlane]] = {}
    for p in planes:
        groups.setdefault(p.source[0], []).append(p)
    if len(groups) >= 2:
        keys = [k for k in groups if any(p.labels.any() for p in groups[k])]
        count = min(max(1, round(validation * len(keys))), len(keys) - 1)
        chosen = set(rng.choice(keys, size=count, replace=False).tolist()) if count else set()
        val = [p for k in chosen for p in groups[k] if p.labels.any()]
        train = [p for k in groups if k not in chosen for p in groups[k]]
        return train, val
    count = min(max(1, round(validation * len(with_objects))), len(with_objects) - 1)
    order = rng.permutation(len(with_objects))
    chosen = {id(with_objects[i]) for i in order[:count]}
    return [p for p in planes if id(p) not in chosen], [p for p in planes if id(p) in chosen]
