"""Writing SAM results into a napari Labels layer: new ids, no overwriting, one undo step.

Every write goes through ``Labels.data_setitem`` inside ``Labels.block_history()``,
so one SAM result is one entry of the layer's undo history: ``labels.undo()``
(or Ctrl+Z on the layer) restores the previous labels exactly.  Pixels that
already carry a label are left alone unless ``overwrite=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import ImageError
from ...segmentation.labels import masks_to_labels
from .image_slices import ImageSlice, spatial_shape

#: The tooltip of both widgets' "overwrite existing labels" box.
OVERWRITE_TIP = (
    "Unticked, pixels that already carry a label keep it; ticked, new objects replace them. "
    "Every write can be undone (Ctrl+Z on the labels layer)."
)


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


def check_labels_fit(labels, image) -> None:
    """Raise :class:`ImageError` unless ``labels`` can hold labels of the ``image`` layer.

    It must have the image's spatial shape and be a plain (not multiscale) layer.
    """
    shape = tuple(int(n) for n in labels.data.shape)
    expected = tuple(spatial_shape(image))
    if shape != expected:
        raise ImageError(
            f"Labels layer {labels.name!r} has shape {shape} but image "
            f"{image.name!r} has {expected}: choose a labels "
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


def _id_source(labels, first_id: int | None):
    """``first_id`` (when given), then free ids above every id in use."""
    free = next_free_label(labels)
    if first_id is not None and first_id > 0:
        yield int(first_id)
        free = max(free, int(first_id) + 1)
    while True:
        yield free
        free += 1


def _layer_indices(index, *coords: np.ndarray) -> list[np.ndarray]:
    """Layer indices of piece pixels (one coordinate array per ``None`` axis of ``index``,
    in order): the piece's index on the other axes."""
    spatial = iter(coords)
    n = coords[0].shape
    return [next(spatial) if i is None else np.full(n, int(i), dtype=np.intp) for i in index]


def write_label_images(
    labels,
    pieces: Sequence[tuple[ImageSlice | tuple, np.ndarray]],
    overwrite: bool = False,
    first_id: int | None = None,
) -> list[int]:
    """Write local label images (1..N per piece, 0 = nothing) into ``labels`` with new ids.

    ``pieces`` are ``(where, label_image)`` pairs; ``where`` is an :class:`ImageSlice`
    (or its ``index`` tuple: ints on hidden axes, ``None`` on the axes the piece
    covers: the two slice axes, or three for a 3D piece such as an object
    carried through z, whose label image then has those three axes in layer
    order).  Each local object that gets at least one pixel receives the next
    free label id, in order, across all pieces; existing nonzero labels survive
    unless ``overwrite``.  ``first_id`` gives the first object that id instead
    (an existing id adds the object's pixels to that label).  Everything is one
    undo step.  Returns the ids written.
    """
    source = _id_source(labels, first_id)
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
        new_ids = [next(source) for _ in present]
        mapping[present] = new_ids
        ids.extend(new_ids)
        coords = np.nonzero(writable)
        all_indices.append(_layer_indices(index, *coords))
        all_values.append(mapping[local[coords]])
    if not ids:
        return []
    info = np.iinfo(labels.data.dtype) if np.issubdtype(labels.data.dtype, np.integer) else None
    if info is not None and max(ids) > info.max:
        raise ImageError(
            f"Labels layer {labels.name!r} ({labels.data.dtype}) cannot hold label {max(ids)}; "
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
    labels,
    image_slice: ImageSlice,
    masks: Sequence[np.ndarray],
    overwrite: bool = False,
    first_id: int | None = None,
) -> list[int]:
    """Write full-resolution 2D boolean masks into the slice, one new id per mask.

    ``first_id``: the first mask's id (see :func:`write_label_images`).
    """
    label_image = masks_to_labels(list(masks), shape=image_slice.shape2d, overlap="first")
    return write_label_images(
        labels, [(image_slice, label_image)], overwrite=overwrite, first_id=first_id
    )


def label_under(labels, image_slice: ImageSlice, xy) -> int:
    """The label at pixel (x, y) of the slice (0 for background or outside)."""
    x, y = (int(np.floor(float(v) + 0.5)) for v in xy)
    h, w = image_slice.shape2d
    if not (0 <= y < h and 0 <= x < w):
        return 0
    return int(np.asarray(labels.data[image_slice.region])[y, x])


def replace_label(
    labels, image_slice: ImageSlice, label_id: int, mask: np.ndarray, overwrite: bool = False
) -> int:
    """Make ``mask`` the new extent of ``label_id`` on the slice; other labels stay.

    Pixels of the label outside ``mask`` become background; pixels of ``mask``
    that are background (or, with ``overwrite``, any label) get ``label_id``.
    One undo step.  Returns the number of pixels changed.
    """
    region = image_slice.region
    existing = np.asarray(labels.data[region])
    mask = np.asarray(mask, bool)
    if mask.shape != existing.shape:
        raise ImageError(f"A mask of shape {mask.shape} does not fit the slice {existing.shape}.")
    gained = mask & (existing != label_id)
    if not overwrite:
        gained &= existing == 0
    lost = (existing == label_id) & ~mask
    changed = gained | lost
    if not changed.any():
        return 0
    rr, cc = np.nonzero(changed)
    indices = tuple(_layer_indices(image_slice.index, rr, cc))
    values = np.where(gained[rr, cc], label_id, 0).astype(labels.data.dtype)
    with labels.block_history():
        labels.data_setitem(indices, values)
    return int(changed.sum())
