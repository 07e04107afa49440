"""Where embeddings come from: memory, an :class:`EmbeddingStore`, or the image encoder.

:class:`EmbeddingSource` serves the embeddings of one 2D image (every tile of
it, or the whole image as one tile) to the predictor, the automatic mask
generator, volumes and tracking: from its own memory, else a shared in-memory
cache, else the store, else the encoder (what it computes goes back into the
cache and the store).  :func:`split_embeddings` reads what every ``embeddings=``
parameter accepts (:data:`Embeddings`); :func:`precompute_embeddings` fills a
store for an image or a whole stack ahead of time (``napari-sam-keras embed``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Iterable, MutableMapping, Sequence
from typing import Any

import numpy as np

from ..errors import EmbeddingError, ImageError
from ..files.write_failures import describe_write_error
from ..model.as_network import as_network
from ..model.embedding import EmbeddingCache, ImageEmbedding
from ..model.embedding_store import (
    CorruptEmbeddingError,
    EmbeddingStore,
    EmbeddingStoreError,
    EmbeddingStoreMismatch,
    EmbeddingStoreWarning,
    StoreLockedError,
    StoreSpec,
    check_compatible,
    image_signature,
)
from .tiling import Tile, TiledImage, TileGrid, as_pair, plane_of

#: ``progress(done, total)``: called after each embedding (computed or found stored).
ProgressCallback = Callable[[int, int], Any]

#: Embeddings kept in memory between calls: an :class:`EmbeddingCache` or any mutable mapping
#: (keys name the image and the model, see :func:`tile_key` for tiles).
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
    "split_embeddings",
    "is_stack",
    "keep_tiles",
    "precompute_embeddings",
    "store_spec",
    "take_tiles",
    "tile_key",
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


def _shape_dtype(image: Any) -> tuple[tuple[int, ...], np.dtype]:
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
        shape, dtype = _shape_dtype(image)
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
                    self.plane = _bind_plane(store, spec)
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


def _bind_plane(store: EmbeddingStore, spec: StoreSpec) -> int:
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
    shape, dtype = _shape_dtype(planes[0])
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
