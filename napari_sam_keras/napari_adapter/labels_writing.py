"""Writing SAM results into a napari Labels layer: new ids, no overwriting, one undo step.

Every write goes through ``Labels.data_setitem`` inside ``Labels.block_history()``,
so one SAM result is one entry of the layer's undo history: ``labels.undo()``
(or Ctrl+Z on the layer) restores the previous labels exactly.  Pixels that
already carry a label are left alone unless ``overwrite=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ImageError
from ..segmentation.labels import masks_to_labels
from .image_slices import ImageSlice, spatial_shape


def create_labels_layer(viewer, image, name: str | None = None, dtype=np.int32):
    """Add an empty Labels layer matching ``image``: spatial shape, scale, translate, affine."""
    shape = spatial_shape(image)
    kwargs = {
        "name": name or f"{image.name} labels",
        "scale": tuple(image.scale),
        "translate": tuple(image.translate),
    }
    if not np.allclose(np.asarray(image.affine.affine_matrix), np.eye(image.ndim + 1)):
        kwargs["affine"] = image.affine
    if not np.allclose(image.rotate, np.eye(image.ndim)):
        kwargs["rotate"] = image.rotate
    return viewer.add_labels(np.zeros(shape, dtype=dtype), **kwargs)


def check_labels_fit(labels, image_slice: ImageSlice) -> None:
    """Raise :class:`ImageError` unless ``labels`` has the image's spatial shape."""
    shape = tuple(int(n) for n in labels.data.shape)
    if shape != tuple(image_slice.spatial_shape):
        raise ImageError(
            f"Labels layer {labels.name!r} has shape {shape} but image "
            f"{image_slice.layer.name!r} has {tuple(image_slice.spatial_shape)}: choose a labels "
            "layer of the same shape, or none to create one."
        )
    if getattr(labels, "multiscale", False):
        raise ImageError(f"Labels layer {labels.name!r} is multiscale; SAM cannot write into it.")


def next_free_label(labels) -> int:
    """One more than the largest label in the layer (1 for an empty layer)."""
    data = labels.data
    if data.size == 0:
        return 1
    return int(np.asarray(data.max())) + 1


def write_label_images(
    labels,
    pieces: Sequence[tuple[ImageSlice | tuple, np.ndarray]],
    overwrite: bool = False,
) -> list[int]:
    """Write local label images (1..N per piece, 0 = nothing) into ``labels`` with new ids.

    ``pieces`` are ``(where, label_image)`` pairs; ``where`` is an :class:`ImageSlice`
    (or its ``index`` tuple: ints on hidden axes, ``None`` on the two slice
    axes).  Each local object that gets at least one pixel receives the next
    free label id, in order, across all pieces; existing nonzero labels survive
    unless ``overwrite``.  Everything is one undo step.  Returns the new ids.
    """
    start = next_free_label(labels)
    next_id = start
    all_indices: list[list[np.ndarray]] = []
    all_values: list[np.ndarray] = []
    ids: list[int] = []
    data = labels.data
    for where, label_image in pieces:
        index = where.index if isinstance(where, ImageSlice) else tuple(where)
        region = tuple(slice(None) if i is None else int(i) for i in index)
        local = np.asarray(label_image)
        existing = np.asarray(data[region])
        if local.shape != existing.shape:
            raise ImageError(
                f"A result of shape {local.shape} does not fit the labels slice {existing.shape}."
            )
        writable = local > 0
        if not overwrite:
            writable &= existing == 0
        if not writable.any():
            continue
        present = np.unique(local[writable])
        mapping = np.zeros(int(local.max()) + 1, dtype=np.int64)
        mapping[present] = np.arange(next_id, next_id + len(present))
        ids.extend(range(next_id, next_id + len(present)))
        next_id += len(present)
        rr, cc = np.nonzero(writable)
        values = mapping[local[rr, cc]]
        full: list[np.ndarray] = []
        spatial = iter((rr, cc))
        for i in index:
            full.append(next(spatial) if i is None else np.full(rr.shape, int(i), dtype=np.intp))
        all_indices.append(full)
        all_values.append(values)
    if not ids:
        return []
    info = np.iinfo(labels.data.dtype) if np.issubdtype(labels.data.dtype, np.integer) else None
    if info is not None and ids[-1] > info.max:
        raise ImageError(
            f"Labels layer {labels.name!r} ({labels.data.dtype}) cannot hold label {ids[-1]}; "
            "convert it to a larger integer type (right-click > Convert data type) first."
        )
    indices = tuple(
        np.concatenate([part[a] for part in all_indices]) for a in range(len(all_indices[0]))
    )
    values = np.concatenate(all_values).astype(labels.data.dtype)
    with labels.block_history():
        labels.data_setitem(indices, values)
    return ids


def write_masks(
    labels, image_slice: ImageSlice, masks: Sequence[np.ndarray], overwrite: bool = False
) -> list[int]:
    """Write full-resolution 2D boolean masks into the slice, one new id per mask."""
    label_image = masks_to_labels(list(masks), shape=image_slice.shape2d, overlap="first")
    return write_label_images(labels, [(image_slice, label_image)], overwrite=overwrite)
