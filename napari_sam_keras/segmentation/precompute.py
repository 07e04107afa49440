"""``precompute_embeddings``: an image's or a whole stack's embeddings into an on-disk
:class:`EmbeddingStore` ahead of time (``napari-sam-keras embed``), resumable and checked.

Where embeddings come from at prediction time is :mod:`.embedding_source`; how a
store is bound to its data, :mod:`.store_binding`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import EmbeddingStoreError, ImageError
from ..model.as_network import as_network
from ..model.embedding_store import CorruptEmbeddingError, EmbeddingStore
from .embedding_source import EmbeddingSource, as_store
from .store_binding import bind_planes
from .tiling import TileGrid, plane_of

#: ``progress(done, total)``: called after each embedding (computed or found stored).
ProgressCallback = Callable[[int, int], Any]

__all__ = ["ProgressCallback", "is_stack", "precompute_embeddings"]


def is_stack(data: Any) -> bool:
    """Whether ``data`` is a stack of planes (first axis) rather than one 2D grey/RGB(A) image."""
    shape = tuple(data.shape)
    if len(shape) == 2:
        return False
    if len(shape) == 3 and shape[-1] in (3, 4):
        return False
    if len(shape) in (3, 4):
        return True
    raise ImageError(
        f"Expected a 2D image (Y, X[, C]) or a stack (Z, Y, X[, C]), got shape {shape}."
    )


def precompute_embeddings(
    model: Any,
    data: Any,
    store: EmbeddingStore | str | os.PathLike,
    planes: int | Iterable[int] | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    halo: int | tuple[int, int] | None = None,
    contrast_limits: tuple[float, float] | None = None,
    image_format: str = "RGB",
    stack: bool | None = None,
    progress: ProgressCallback | None = None,
    jit_compile: bool = True,
) -> dict[str, int]:
    """Compute the embeddings of an image or a stack into an on-disk store.

    A store interrupted half-way resumes: complete entries are checked
    (checksum) and kept, the rest is computed.  Memory stays bounded: one
    plane's tile is in memory at a time, and a lazy ``data`` (dask, zarr,
    memory map) is read one tile at a time.

    Args:
        model: a :class:`~napari_sam_keras.SAMNetwork` (or keras-cv model).
        data: a 2D image (H, W[, C]) or a stack (Z, H, W[, C]).
        store: an :class:`EmbeddingStore` or its path (created if missing).
        planes: for a stack, the planes to compute now (default: all); the
            store describes the whole stack either way.
        tile_shape, halo: the tiling (None: one embedding per plane).
        contrast_limits: intensity range mapped to 0..255 (default: each
            plane's min..max for non-uint8 data).
        image_format: "RGB" or "BGR".
        stack: whether ``data`` is a stack; default: inferred from its shape
            ((H, W, 3) and (H, W, 4) are images).
        progress: ``progress(done, total)`` after each embedding; it may raise
            :class:`~napari_sam_keras.OperationCancelled` (what is written stays valid).

    Returns:
        Counts of embeddings ``computed``, ``reused`` (found complete) and
        ``repaired`` (found damaged and computed again).

    Raises:
        EmbeddingStoreMismatch: the store was made for other data, another
            model, tiling or conversion.
    """
    network = as_network(model)
    store = as_store(store)
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    stack = is_stack(data) if stack is None else bool(stack)
    plane_arrays = [plane_of(data, z) for z in range(data.shape[0])] if stack else [data]
    if stack:
        chosen = range(len(plane_arrays)) if planes is None else _plane_list(planes, data.shape[0])
    elif planes not in (None, 0, [0], (0,)):
        raise ImageError("planes was given, but the data is a single 2D image.")
    else:
        chosen = [0]
    store.lock_for_writing()  # one writer: a second process is refused here, before any work
    grid = bind_planes(
        store, network, plane_arrays, stack, contrast_limits, image_format, tile_shape, halo
    )
    encoder = network.image_encoder(jit_compile)
    total = len(chosen) * len(grid)
    done = 0
    if progress is not None:
        progress(0, total)

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    counts = {"computed": 0, "reused": 0, "repaired": 0}
    for z in chosen:
        source = EmbeddingSource(
            encoder,
            plane_arrays[z],
            tile_shape,
            halo,
            contrast_limits,
            image_format,
            store=store,
            plane=z,
            cache_bytes=1,  # keep only the newest embedding in memory
        )
        for key, n in source.fill_store(step).items():
            counts[key] += n
    _verify_written(store, chosen, grid)
    return counts


def _verify_written(store: EmbeddingStore, planes: Iterable[int], grid: TileGrid) -> None:
    """Read back every entry just made complete (checksum, shape, sizes): success is
    reported only for a store that reads back whole."""
    bad = []
    for z in planes:
        for tile in grid:
            try:
                ok = store.read(z, tile.index, tile.shape) is not None
            except CorruptEmbeddingError:
                ok = False
            if not ok:
                bad.append(f"plane {z} tile {tile.index}")
    if bad:
        raise EmbeddingStoreError(
            f"The embedding store {store.path} does not read back what was written "
            f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}): another program may "
            "have changed it, or the disk failed. Run the command again to repair it."
        )


def _plane_list(planes: int | Iterable[int], n: int) -> list[int]:
    chosen = [int(planes)] if isinstance(planes, int | np.integer) else [int(p) for p in planes]
    for p in chosen:
        if not -n <= p < n:
            raise ImageError(f"Plane {p} is outside 0..{n - 1}.")
    return sorted({p % n for p in chosen})
