"""An :class:`EmbeddingStore` bound to the data it holds: the spec of embedded data
(:func:`store_spec`), a store bound to a stack's planes or found to hold one image
(:func:`bind_planes`, :func:`bind_plane`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..model.embedding_store import (
    EmbeddingStore,
    EmbeddingStoreMismatch,
    StoreSpec,
    check_compatible,
    image_signature,
)
from .tiling import TileGrid, as_pair

__all__ = ["bind_plane", "bind_planes", "shape_and_dtype", "store_spec"]


def shape_and_dtype(image: Any) -> tuple[tuple[int, ...], np.dtype]:
    """An array-like's shape (ints) and dtype."""
    return tuple(int(s) for s in image.shape), np.dtype(image.dtype)


def store_spec(
    network,
    plane_signatures: Sequence[str],
    plane_shape: tuple[int, ...],
    dtype,
    stack: bool,
    contrast_limits: tuple[float, float] | None,
    image_format: str,
    tile_shape: tuple[int, int] | None,
    halo: tuple[int, int] | None,
) -> StoreSpec:
    """The :class:`StoreSpec` of data embedded by ``network`` with these settings."""
    cfg = network.config
    e = cfg.embedding_size
    return StoreSpec(
        model_key=network.key,
        model_name=network.name,
        model_config=cfg.to_dict(),
        plane_signatures=tuple(plane_signatures),
        plane_shape=tuple(int(s) for s in plane_shape),
        dtype=np.dtype(dtype).str,
        stack=bool(stack),
        contrast_limits=None
        if contrast_limits is None
        else (float(contrast_limits[0]), float(contrast_limits[1])),
        image_format=image_format,
        tile_shape=None if tile_shape is None else as_pair(tile_shape, "tile_shape", 1),
        halo=None if tile_shape is None else (as_pair(halo, "halo", 0) or (0, 0)),
        embedding_shape=(e, e, cfg.prompt_embed_dim),
    )


def bind_plane(store: EmbeddingStore, spec: StoreSpec) -> int:
    """The plane of ``spec``'s one image in ``store`` (binding an empty store to it)."""
    if store.spec is None:
        store.bind(spec)
        return 0
    check_compatible(store.spec, spec, store.path)
    plane = store.find_plane(spec.plane_signatures[0])
    if plane is None:
        held = store.spec
        what = (
            f"a stack of {len(held.plane_signatures)} planes"
            if held.stack
            else "another image of the same size"
        )
        raise EmbeddingStoreMismatch(
            f"The embedding store {store.path} was made for other data ({what}): this image "
            "is not in it. Choose another store, or delete this one to compute it again."
        )
    return plane


def bind_planes(
    store: EmbeddingStore,
    network,
    planes: Sequence[Any],
    stack: bool,
    contrast_limits: tuple[float, float] | None,
    image_format: str,
    tile_shape: int | tuple[int, int] | None,
    halo: int | tuple[int, int] | None,
) -> TileGrid:
    """Bind ``store`` to these 2D planes (a stack, or one image), or check that it was made
    for them; the tiling of every plane.

    Raises:
        EmbeddingStoreMismatch: the store was made for other data, another model, tiling
            or conversion.
    """
    shape, dtype = shape_and_dtype(planes[0])
    grid = TileGrid(shape[:2], tile_shape if tile_shape is not None else shape[:2], halo)
    spec = store_spec(
        network,
        [image_signature(p) for p in planes],
        shape,
        dtype,
        stack,
        contrast_limits,
        image_format,
        grid.tile_shape if tile_shape is not None else None,
        grid.halo if tile_shape is not None else None,
    )
    store.bind(spec)
    return grid
