"""3D labels from 2D ones: the automatic generator on every slice, objects linked through z.

:func:`link_slices` joins 2D label images of neighbouring slices into 3D
objects by overlap: an object on slice z and one on slice z + 1 are the same
3D object when their IoU is at least ``iou_threshold``; each object is linked
to at most one on each neighbouring slice (the best-overlapping pairs first).
:func:`segment_volume_automatic` runs
:class:`~napari_sam_keras.SAMAutomaticMaskGenerator` on each slice, paints
its masks into 2D labels (:func:`~napari_sam_keras.masks_to_labels`) and links them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from ..errors import ImageError, SAMError
from .automatic_mask_generator import SAMAutomaticMaskGenerator
from .embedding_source import Embeddings
from .labels import masks_to_labels
from .volume import (
    ProgressCallback,
    SlicePropagator,
    check_volume,
    default_contrast_limits,
)

#: Default IoU between an object's masks on neighbouring slices for them to be one 3D object.
#: Slices of an ellipsoid keep an IoU above 0.25 with their neighbours
#: except near its tips (a small cap can end up as an object of its own: see min_slices).
LINK_IOU_THRESHOLD = 0.25


def _pair_ious(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels in a, labels in b, IoU) for every pair of objects that overlap."""
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    pairs, inter = np.unique(
        np.stack([a[both].astype(np.int64), b[both].astype(np.int64)]), axis=1, return_counts=True
    )
    ids_a, area_a = np.unique(a[a > 0], return_counts=True)
    ids_b, area_b = np.unique(b[b > 0], return_counts=True)
    size_a = area_a[np.searchsorted(ids_a, pairs[0])]
    size_b = area_b[np.searchsorted(ids_b, pairs[1])]
    return pairs[0], pairs[1], inter / (size_a + size_b - inter)


def link_slices(
    labels_per_slice: np.ndarray | Sequence[np.ndarray],
    iou_threshold: float = LINK_IOU_THRESHOLD,
    min_slices: int = 1,
) -> np.ndarray:
    """Link 2D labels of consecutive slices into 3D objects.

    Args:
        labels_per_slice: (Z, Y, X) integer labels, or a sequence of Z (Y, X)
            label images; each slice's labels are independent (0 is background).
        iou_threshold: objects on neighbouring slices with at least this IoU
            are the same 3D object (default :data:`LINK_IOU_THRESHOLD`, 0.25).
            Each object links to at most one object per neighbouring slice:
            pairs are taken from the highest IoU down.
        min_slices: 3D objects on fewer slices than this are dropped (1 keeps
            every object, 2 drops those seen on one slice only).

    Returns:
        (Z, Y, X) int32 labels, one id per 3D object, numbered 1, 2, ... in
        the order of their first slice (then of their 2D label there).
    """
    labels = np.asarray(labels_per_slice)
    if labels.ndim != 3:
        raise ImageError(
            f"link_slices needs (Z, Y, X) labels, one 2D label image per slice; got shape "
            f"{labels.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ImageError(f"Labels must be integers, got dtype {labels.dtype}.")
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise SAMError(f"iou_threshold must be above 0 and at most 1, got {iou_threshold}.")
    if int(min_slices) < 1:
        raise SAMError(f"min_slices must be 1 or more, got {min_slices}.")
    if labels.size and labels.min() < 0:
        raise ImageError("Labels must not be negative.")

    # one node per (slice, 2D label); union-find over links between neighbouring slices
    per_slice = [np.unique(s[s > 0]) for s in labels]
    offsets = np.cumsum([0] + [len(ids) for ids in per_slice])
    parent = np.arange(offsets[-1])

    def node(z: int, label: np.ndarray) -> np.ndarray:
        return offsets[z] + np.searchsorted(per_slice[z], label)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for z in range(len(labels) - 1):
        a, b, iou = _pair_ious(labels[z], labels[z + 1])
        keep = iou >= iou_threshold
        a, b, iou = a[keep], b[keep], iou[keep]
        order = np.argsort(-iou, kind="stable")
        used_a: set[int] = set()
        used_b: set[int] = set()
        for i in order:
            if int(a[i]) in used_a or int(b[i]) in used_b:
                continue
            used_a.add(int(a[i]))
            used_b.add(int(b[i]))
            ra, rb = find(int(node(z, a[i]))), find(int(node(z + 1, b[i])))
            parent[max(ra, rb)] = min(ra, rb)

    roots = np.array([find(i) for i in range(len(parent))], np.int64)
    slices_of = np.zeros(len(parent), np.int64)
    for z in range(len(labels)):
        np.add.at(slices_of, roots[offsets[z] : offsets[z + 1]], 1)
    # roots are the object's first node (the smallest index), so ids follow first appearance
    kept_roots = np.unique(roots[slices_of[roots] >= int(min_slices)])
    new_id = np.zeros(len(parent), np.int64)
    new_id[kept_roots] = np.arange(1, len(kept_roots) + 1)
    if len(kept_roots) >= np.iinfo(np.int32).max:
        raise SAMError("Too many 3D objects for int32 labels.")

    out = np.zeros(labels.shape, np.int32)
    for z, ids in enumerate(per_slice):
        if not len(ids):
            continue
        lut = np.zeros(int(ids.max()) + 1, np.int32)
        lut[ids] = new_id[roots[offsets[z] : offsets[z + 1]]]
        out[z] = lut[labels[z]]
    return out


def segment_volume_automatic(
    model: Any,
    volume: np.ndarray,
    link_iou_threshold: float = LINK_IOU_THRESHOLD,
    min_slices: int = 1,
    overlap: str = "larger_first",
    embeddings: Embeddings | None = None,
    progress: ProgressCallback | None = None,
    contrast_limits: tuple[float, float] | None = None,
    slice_key: Callable[[int], Hashable] | None = None,
    **generator_options: Any,
) -> np.ndarray:
    """Segment everything in a volume: 2D automatic masks on each slice, linked into 3D labels.

    Args:
        model: a :class:`~napari_sam_keras.SAMNetwork`, a
            :class:`~napari_sam_keras.SAMPredictor` or a configured
            :class:`~napari_sam_keras.SAMAutomaticMaskGenerator`.
        volume: (Z, Y, X) or (Z, Y, X, 3) of any numeric dtype.
        link_iou_threshold, min_slices: see :func:`link_slices`.
        overlap: how overlapping masks of one slice are painted, see
            :func:`~napari_sam_keras.masks_to_labels`.
        embeddings, contrast_limits, slice_key: as in
            :func:`~napari_sam_keras.segment_volume` (every slice is embedded).
        progress: ``progress(done, total)`` over all point batches of all
            slices; raising :class:`~napari_sam_keras.OperationCancelled`
            stops the work.
        **generator_options: parameters of
            :class:`~napari_sam_keras.SAMAutomaticMaskGenerator`
            (``points_per_side``, ``pred_iou_thresh``, ...) when ``model`` is
            not a generator already.

    Returns:
        (Z, Y, X) int32 labels, one id per 3D object.
    """
    volume = check_volume(volume)
    if isinstance(model, SAMAutomaticMaskGenerator):
        if generator_options:
            raise SAMError(
                "Generator options were given with a ready SAMAutomaticMaskGenerator: set "
                f"{sorted(generator_options)} on the generator instead."
            )
        generator = model
    else:
        generator = SAMAutomaticMaskGenerator(model, **generator_options)
    count, height, width = volume.shape[:3]
    limits = default_contrast_limits(volume, contrast_limits)
    engine = SlicePropagator(
        generator.predictor, volume, limits, embeddings, None, slice_key, total=count
    )

    def work() -> np.ndarray:
        slices = np.zeros((count, height, width), np.int32)

        def step(done: int, total: int) -> None:
            if progress is not None and (done or not z):  # a slice's 0 is the last one's end
                progress(z * total + done, count * total)

        for z in range(count):
            engine.select(z)
            embedding = engine.predictor.embedding_state()
            records = generator.generate(
                volume[z], progress=step, contrast_limits=limits, embedding=embedding
            )
            slices[z] = masks_to_labels(records, (height, width), overlap=overlap)
        return link_slices(slices, link_iou_threshold, min_slices)

    return engine.run(work)
