"""Where embeddings come from: memory, an :class:`EmbeddingStore`, or the image encoder.

:class:`EmbeddingSource` serves the embeddings of one 2D image (every tile of
it, or the whole image as one tile) to the predictor, the automatic mask
generator, volumes and tracking: from its own memory, else a shared in-memory
cache, else the store, else the encoder (what it computes goes back into the
cache and the store).  :func:`split_embeddings` reads what every ``embeddings=``
parameter accepts (:data:`Embeddings`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

import numpy as np

from ..errors import EmbeddingError, ImageError
from ..files.write_failures import describe_write_error
from ..model.embedding import EmbeddingCache, ImageEmbedding
from ..model.embedding_store import (
    CorruptEmbeddingError,
    EmbeddingStore,
    EmbeddingStoreWarning,
    StoreLockedError,
    check_compatible,
    image_signature,
)
from .store_binding import bind_plane, shape_and_dtype, store_spec
from .tile_keys import tile_key
from .tiling import Tile, TiledImage, TileGrid

#: Embeddings kept in memory between calls: an :class:`EmbeddingCache` or any mutable mapping
#: (keys name the image and the model, see :func:`~.tile_keys.tile_key` for tiles).
EmbeddingMemory = EmbeddingCache | MutableMapping

#: What every ``embeddings=`` parameter accepts: an in-memory cache, an
#: :class:`EmbeddingStore`, or a store's path (opened, or created on first use).
Embeddings = EmbeddingCache | MutableMapping | EmbeddingStore | str | os.PathLike

__all__ = [
    "EmbeddingMemory",
    "EmbeddingSource",
    "Embeddings",
    "PlaneEmbeddings",
    "as_store",
    "image_key",
    "split_embeddings",
]


def as_store(embeddings: EmbeddingStore | str | os.PathLike | None) -> EmbeddingStore | None:
    """An :class:`EmbeddingStore` from a store or a path (None stays None)."""
    if embeddings is None or isinstance(embeddings, EmbeddingStore):
        return embeddings
    return EmbeddingStore(embeddings)


def split_embeddings(
    embeddings: Embeddings | None,
) -> tuple[EmbeddingMemory | None, EmbeddingStore | None]:
    """(in-memory cache, store) from an ``embeddings=`` argument; one of them is None.

    Raises:
        EmbeddingError: ``embeddings`` is none of :data:`Embeddings`.
    """
    if embeddings is None:
        return None, None
    if isinstance(embeddings, EmbeddingStore | str | os.PathLike):
        return None, as_store(embeddings)
    if isinstance(embeddings, EmbeddingCache | MutableMapping):
        return embeddings, None
    raise EmbeddingError(
        "embeddings must be an EmbeddingCache (or a dict), an EmbeddingStore or a store's "
        f"path, not {type(embeddings).__name__}."
    )


def image_key(image: Any, contrast_limits, image_format: str, network) -> tuple:
    """The key of an image's embedding in an in-memory cache: its pixels (a signature), its
    conversion and the model."""
    limits = None if contrast_limits is None else tuple(float(v) for v in contrast_limits)
    return ("image", image_signature(image), limits, image_format, network.key)


class EmbeddingSource:
    """The embeddings of one 2D image, tile by tile: from memory, a store, or the encoder.

    The one look-up chain of the package: this object's own memory, then
    ``memory`` (shared between calls, under ``key``), then ``store``, then the
    encoder; an embedding found later in the chain is put into the earlier ones.

    Args:
        encoder: the network's :class:`~napari_sam_keras.model.image_encoder.ImageEncoder`.
        image: (H, W), (H, W, 3) or (H, W, 4) array-like; lazy arrays are read
            one tile at a time.
        tile_shape, halo: the tiling (see :class:`TileGrid`); None: the whole
            image is one tile, embedded exactly as ``SAMPredictor.set_image`` does.
        contrast_limits, image_format: the conversion to RGB uint8.
        store: where embeddings are read from and written to, or None.
        plane: the image's plane in ``store``; None: found by the image's
            content signature (a new store is bound to this image).
        cache_bytes: how many bytes of embeddings to keep in memory (the newest one is
            always kept).
        memory, key: an in-memory cache shared between calls (an :class:`EmbeddingCache`
            or a dict) and the image's key there (naming its pixels, conversion and
            model): the whole image's embedding is kept under ``key``, a tile's under
            :func:`tile_key`.
    """

    def __init__(
        self,
        encoder,
        image: Any,
        tile_shape: int | tuple[int, int] | None = None,
        halo: int | tuple[int, int] | None = None,
        contrast_limits: tuple[float, float] | None = None,
        image_format: str = "RGB",
        store: EmbeddingStore | None = None,
        plane: int | None = None,
        cache_bytes: int = 1024**3,
        memory: EmbeddingMemory | None = None,
        key: Hashable | None = None,
    ) -> None:
        if (memory is None) != (key is None):
            raise ValueError("memory and key go together")  # a programming error, not a user's
        if not hasattr(image, "shape") or not hasattr(image, "dtype"):
            image = np.asarray(image)
        shape, dtype = shape_and_dtype(image)
        if len(shape) < 2:
            raise ImageError(f"Expected a 2D image, got shape {shape}.")
        self.encoder = encoder
        self.tiled = tile_shape is not None
        if not self.tiled and halo is not None:
            raise ImageError("halo was given without tile_shape.")
        self.grid = TileGrid(shape[:2], tile_shape if self.tiled else shape[:2], halo)
        self.image = TiledImage(image, self.grid, contrast_limits, image_format)
        self.cache = EmbeddingCache(max_items=1 << 20, max_bytes=cache_bytes)
        self.store = store
        self.plane = plane
        self.memory = memory
        self.key = key
        #: How many embeddings were computed by the encoder, and how many read from the store.
        self.computed = 0
        self.read = 0
        if store is not None:
            # With a known plane only the settings are checked, not the pixels (the caller
            # bound the store to the whole data): no signature is computed then.
            spec = store_spec(
                encoder.network,
                [image_signature(image)] if plane is None else ["(not computed)"],
                shape,
                dtype,
                False,
                contrast_limits,
                image_format,
                self.grid.tile_shape if self.tiled else None,
                self.grid.halo if self.tiled else None,
            )
            if plane is None:
                try:
                    self.plane = bind_plane(store, spec)
                except StoreLockedError as err:  # a new store another process is making
                    warnings.warn(f"{err} Embeddings are not stored.", EmbeddingStoreWarning, 2)
                    self.store = None
            else:
                check_compatible(store.spec, spec, store.path)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.grid.image_shape

    def tile(self, index: int) -> Tile:
        return self.grid[index]

    def embedding(self, index: int = 0) -> ImageEmbedding:
        """The embedding of tile ``index`` (0 when untiled): cached, stored, or computed now."""
        emb = self.cache.get(index)
        if emb is None:
            emb = self._remembered(index)
            if emb is None:
                emb = self._stored(index)
                if emb is None:
                    emb = self._compute_and_store(index)
                self._remember(index, emb)
            self.cache.put(index, emb)
        return emb

    def memory_key(self, index: int) -> Hashable:
        """The key of tile ``index`` in ``memory`` (the image's key when untiled)."""
        return tile_key(self.key, self, index) if self.tiled else self.key

    def _remembered(self, index: int) -> ImageEmbedding | None:
        return None if self.memory is None else self.memory.get(self.memory_key(index))

    def _remember(self, index: int, emb: ImageEmbedding) -> None:
        if self.memory is None:
            return
        if hasattr(self.memory, "put"):
            self.memory.put(self.memory_key(index), emb)
        else:
            self.memory[self.memory_key(index)] = emb

    def _stored(self, index: int) -> ImageEmbedding | None:
        if self.store is None:
            return None
        try:
            emb = self.store.read(self.plane, index, self.grid[index].shape)
        except CorruptEmbeddingError as err:
            warnings.warn(f"{err} It is computed again.", EmbeddingStoreWarning, stacklevel=3)
            return None
        self.read += emb is not None
        return emb

    def _compute_and_store(self, index: int, must_store: bool = False) -> ImageEmbedding:
        """Embed tile ``index`` and store it; unless ``must_store`` (filling a store), a
        store that cannot take it (another writer, a full disk) only costs the storing."""
        emb = self.encoder.embed(self.image.rgb(self.grid[index]))
        self.computed += 1
        if self.store is not None and not self.store.read_only:
            try:
                self.store.write(self.plane, index, emb)
            except (StoreLockedError, OSError) as err:
                if must_store:
                    raise
                if isinstance(err, OSError):
                    err = describe_write_error(err)
                warnings.warn(f"{err} This embedding is not stored.", EmbeddingStoreWarning, 3)
        return emb

    def fill_store(self, progress: Callable[[], None] | None = None) -> dict[str, int]:
        """Make sure every tile is in the store, keeping nothing in memory.

        Complete entries are read and checked against their checksum; damaged
        or missing ones are computed and written.  ``progress()`` is called
        after each tile.  Returns counts: ``computed``, ``reused``, ``repaired``.
        """
        counts = {"computed": 0, "reused": 0, "repaired": 0}
        for tile in self.grid:
            damaged = False
            try:
                found = self.store.read(self.plane, tile.index, tile.shape) is not None
            except CorruptEmbeddingError as err:
                warnings.warn(f"{err} It is computed again.", EmbeddingStoreWarning, stacklevel=2)
                found, damaged = False, True
            if found:
                counts["reused"] += 1
            else:
                self._compute_and_store(tile.index, must_store=True)
                counts["repaired" if damaged else "computed"] += 1
            if progress is not None:
                progress()
        return counts


#: The former name of :class:`EmbeddingSource`.
PlaneEmbeddings = EmbeddingSource
