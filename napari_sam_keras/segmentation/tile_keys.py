"""The in-memory keys of a tiled image's embeddings, and tiles moved between an
:class:`~.embedding_source.EmbeddingSource` and a cache shared between calls."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .embedding_source import EmbeddingSource

__all__ = ["keep_tiles", "take_tiles", "tile_key"]


def tile_key(key: Hashable, tiles: EmbeddingSource, index: int) -> tuple:
    """The key of tile ``index`` of an image whose (untiled) embedding key is ``key``.

    It holds the tiling, so an untiled embedding is never handed out for a tile
    (or a tile of another tiling for this one).
    """
    return (key, "tile", tiles.grid.tile_shape, tiles.grid.halo, int(index))


def take_tiles(tiles: EmbeddingSource, cache: Any, key: Hashable) -> int:
    """Give ``tiles`` the tile embeddings ``cache`` holds for the image ``key``; how many.

    ``cache`` is an :class:`EmbeddingCache` or a dict (see :func:`tile_key`).
    """
    found = 0
    for index in range(len(tiles.grid)):
        if index in tiles.cache:
            continue
        emb = cache.get(tile_key(key, tiles, index))
        if emb is not None:
            tiles.cache.put(index, emb)
            found += 1
    return found


def keep_tiles(tiles: EmbeddingSource, cache: Any, key: Hashable) -> None:
    """Put the tile embeddings ``tiles`` holds into ``cache`` (those not there yet)."""
    for index in range(len(tiles.grid)):
        k = tile_key(key, tiles, index)
        if index not in tiles.cache or k in cache:
            continue
        emb = tiles.cache.get(index)
        if emb is None:
            continue
        if hasattr(cache, "put"):
            cache.put(k, emb)
        else:
            cache[k] = emb
