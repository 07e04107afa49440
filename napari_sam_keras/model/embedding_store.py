"""``EmbeddingStore``: image embeddings on disk (zarr), with what is needed to trust them later.

A store holds the embeddings of one image, of every plane of a stack, and of
every tile of each (see :mod:`napari_sam_keras.segmentation.tiling`), computed
by one model.  Layout (a zarr v3 group)::

    STORE.zarr/
        zarr.json          root attributes, key "napari_sam_keras": what the store is for
        p00000/            one group per plane (a 2D image has plane 0 only)
            t00000/        one array per tile (tile 0 when untiled): (1, h, w, C) float32
            t00001/ ...

The root attributes record the data's content signature (a hash of the
pixels of each plane), the model's identity (:attr:`SAMNetwork.key`: the
SHA-256 of the weights file for loaded checkpoints), its architecture, the
tiling, the intensity conversion, the embedding shape and the package
version.  Opening a store for other data, another model, another tiling or
other contrast limits raises :class:`EmbeddingStoreMismatch`.

Each entry is written data first, then its completion marker: the array is
created with ``complete: false``, its chunk is written, and only then are its
attributes rewritten with ``complete: true``, its input and original sizes and
one checksum that covers the embedding *and* those sizes.  zarr writes every file to a temporary name and
renames it, so a process killed at any point leaves entries that are either
complete or not marked complete, never a half-written one read as valid; a
later run recomputes what is not complete.  On reading, the checksum is
verified, the entry's shape and sizes are compared with the store's
metadata (and, by :class:`~napari_sam_keras.segmentation.embedding_source.EmbeddingSource`,
with the image): a corrupted or missing chunk or an edited size raises
:class:`CorruptEmbeddingError` before any large array is made.

A store is created only in a missing or empty folder (:mod:`..files.store_safety`:
never in a folder holding a user's files), and one process writes it at a time
(:mod:`..files.store_lock`: the second writer is refused with a clear message).
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptEmbeddingError, EmbeddingStoreError, EmbeddingStoreMismatch
from ..files.store_lock import StoreLock, StoreLockedError
from ..files.store_safety import CREATE_ONLY_MODE, check_store_folder, prepare_store_folder
from ..files.write_failures import describe_write_error
from .embedding import ImageEmbedding

FORMAT = "napari-sam-keras embedding store"
FORMAT_VERSION = 1
_ATTR = "napari_sam_keras"


__all__ = [
    "CorruptEmbeddingError",
    "EmbeddingStore",
    "EmbeddingStoreError",
    "EmbeddingStoreMismatch",
    "EmbeddingStoreWarning",
    "StoreLockedError",
    "StoreSpec",
    "embedding_checksum",
    "entry_checksum",
    "image_signature",
]


class EmbeddingStoreWarning(UserWarning):
    """Something about a store worth knowing that does not stop its use."""


def image_signature(image: Any, rows_per_block: int = 1024) -> str:
    """A hash of an image's pixels, shape and dtype, read in blocks of rows.

    ``image`` may be lazy (dask, zarr, memory map): it is read
    ``rows_per_block`` rows at a time, never whole.
    """
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    dtype = np.dtype(image.dtype)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{shape}|{dtype.newbyteorder('<').str}|".encode())
    if len(shape) == 0:
        digest.update(np.ascontiguousarray(np.asarray(image), dtype.newbyteorder("<")).tobytes())
    else:
        for start in range(0, shape[0], rows_per_block):
            block = np.asarray(image[start : start + rows_per_block])
            digest.update(np.ascontiguousarray(block, dtype.newbyteorder("<")).tobytes())
    return "blake2b:" + digest.hexdigest()


def embedding_checksum(features: np.ndarray) -> str:
    """The checksum written beside each stored embedding (of its float32 little-endian bytes)."""
    data = np.ascontiguousarray(features, dtype="<f4")
    return "blake2b:" + hashlib.blake2b(data.tobytes(), digest_size=20).hexdigest()


#: The prefix of :func:`entry_checksum` (older stores checksummed the features only).
_ENTRY_CHECKSUM = "blake2b-entry:"


def entry_checksum(
    features: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> str:
    """The checksum of a stored entry: its embedding and the sizes it says it was made at."""
    data = np.ascontiguousarray(features, dtype="<f4")
    digest = hashlib.blake2b(data.tobytes(), digest_size=20)
    sizes = [int(v) for v in (*original_size, *input_size)]
    digest.update(f"|{list(data.shape)}|{sizes}".encode())
    return _ENTRY_CHECKSUM + digest.hexdigest()


@dataclass(frozen=True)
class StoreSpec:
    """What a store's embeddings were made from; two specs must agree to share a store.

    Attributes:
        model_key: :attr:`SAMNetwork.key` (a hash of the weights for loaded files).
        model_name: where the model came from, for messages.
        model_config: the architecture (:meth:`SAMConfig.to_dict`).
        plane_signatures: :func:`image_signature` of each plane, in order.
        plane_shape: shape of one plane, (H, W) or (H, W, channels).
        dtype: the planes' dtype (numpy ``str``).
        stack: whether the data is a stack of planes (else one 2D image).
        contrast_limits: the intensity range mapped to 0..255, or None (uint8
            as it is, otherwise each plane's own min..max).
        image_format: "RGB" or "BGR".
        tile_shape: (h, w) of the tiles, or None (untiled).
        halo: (rows, columns) of the tiles' halo, or None.
        embedding_shape: (h, w, C) of one embedding.
    """

    model_key: str
    model_name: str
    model_config: dict
    plane_signatures: tuple[str, ...]
    plane_shape: tuple[int, ...]
    dtype: str
    stack: bool
    contrast_limits: tuple[float, float] | None
    image_format: str
    tile_shape: tuple[int, int] | None
    halo: tuple[int, int] | None
    embedding_shape: tuple[int, int, int]

    @property
    def data_signature(self) -> str:
        """One hash of the whole data (the planes' signatures in order, and their shape)."""
        digest = hashlib.blake2b(digest_size=20)
        digest.update(f"{self.plane_shape}|{self.dtype}|{self.stack}|".encode())
        for s in self.plane_signatures:
            digest.update(s.encode() + b"|")
        return "blake2b:" + digest.hexdigest()

    def to_attrs(self) -> dict:
        from .. import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "model": {
                "key": self.model_key,
                "name": self.model_name,
                "config": self.model_config,
            },
            "data": {
                "signature": self.data_signature,
                "plane_signatures": list(self.plane_signatures),
                "plane_shape": list(self.plane_shape),
                "dtype": self.dtype,
                "stack": self.stack,
                "planes": len(self.plane_signatures),
            },
            "conversion": {
                "contrast_limits": _list_or_none(self.contrast_limits),
                "image_format": self.image_format,
            },
            "tiling": {
                "tile_shape": _list_or_none(self.tile_shape),
                "halo": _list_or_none(self.halo),
            },
            "embedding_shape": list(self.embedding_shape),
        }

    @classmethod
    def from_attrs(cls, attrs: dict) -> StoreSpec:
        model, data = attrs["model"], attrs["data"]
        conv, tiling = attrs["conversion"], attrs["tiling"]
        return cls(
            model_key=model["key"],
            model_name=model["name"],
            model_config=model["config"],
            plane_signatures=tuple(data["plane_signatures"]),
            plane_shape=tuple(data["plane_shape"]),
            dtype=data["dtype"],
            stack=bool(data["stack"]),
            contrast_limits=_tuple_or_none(conv["contrast_limits"]),
            image_format=conv["image_format"],
            tile_shape=_tuple_or_none(tiling["tile_shape"]),
            halo=_tuple_or_none(tiling["halo"]),
            embedding_shape=tuple(attrs["embedding_shape"]),
        )


def _list_or_none(value):
    return None if value is None else [float(v) if isinstance(v, float) else v for v in value]


def _tuple_or_none(value):
    return None if value is None else tuple(value)


def _entry_name(plane: int, tile: int) -> str:
    return f"p{int(plane):05d}/t{int(tile):05d}"


class EmbeddingStore:
    """Image embeddings on disk, per plane and per tile, that can be trusted later.

    Args:
        path: the store's folder (``.zarr`` by convention).  It is created
            when the first spec is bound to it (see :meth:`bind`).
        read_only: open for reading only (no folder is created, nothing written).

    Typical use goes through :func:`~napari_sam_keras.precompute_embeddings`
    (or ``napari-sam-keras embed``) to fill a store, and
    ``SAMPredictor(model, embeddings=path)`` to use it.
    """

    def __init__(self, path: str | os.PathLike, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._group = None
        self._spec: StoreSpec | None = None
        self._writer = StoreLock(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise EmbeddingStoreError(f"{self.path} is a file, not an embedding store (a folder).")
        if self.path.is_dir() and any(self.path.iterdir()):
            self._open_existing()
        elif read_only:
            raise EmbeddingStoreError(f"There is no embedding store at {self.path}.")

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r})"

    # --- metadata --------------------------------------------------------------------

    def _open_existing(self) -> None:
        import zarr

        try:
            group = zarr.open_group(store=str(self.path), mode="r" if self.read_only else "r+")
            attrs = dict(group.attrs).get(_ATTR)
        except Exception as err:
            raise EmbeddingStoreError(
                f"{self.path} is not an embedding store (not a zarr group: {err})."
            ) from err
        if attrs is None:
            # A store created and killed before its metadata was written, or a foreign group.
            with warnings.catch_warnings():  # zarr warns about every file that is not a node
                warnings.simplefilter("ignore")
                members = set(group.keys())
            if members:
                raise EmbeddingStoreError(
                    f"{self.path} is a zarr group but not a napari-sam-keras embedding store."
                )
            if not self.read_only:  # refused now, before any work, if the folder holds files
                check_store_folder(self.path)
            self._group = group
            return
        if attrs.get("format") != FORMAT or attrs.get("format_version") != FORMAT_VERSION:
            raise EmbeddingStoreError(
                f"{self.path} is an embedding store of format {attrs.get('format')!r} version "
                f"{attrs.get('format_version')}, which this version cannot read; make it again."
            )
        try:
            self._spec = StoreSpec.from_attrs(attrs)
            check_spec_sizes(self._spec)
        except (KeyError, TypeError, ValueError) as err:
            raise EmbeddingStoreError(
                f"The metadata of the embedding store {self.path} is damaged ({err})."
            ) from err
        from .. import __version__

        if attrs.get("package_version") != __version__:
            warnings.warn(
                f"The embedding store {self.path} was written by napari-sam-keras "
                f"{attrs.get('package_version')}, this is {__version__}.",
                EmbeddingStoreWarning,
                stacklevel=3,
            )
        self._group = group

    @property
    def spec(self) -> StoreSpec | None:
        """What the store was made for; None while nothing is bound to it."""
        return self._spec

    @property
    def metadata(self) -> dict:
        """The root attributes (what :attr:`spec` says, plus format and package version)."""
        return {} if self._group is None else dict(self._group.attrs).get(_ATTR, {})

    def bind(self, spec: StoreSpec) -> None:
        """Create the store for ``spec``, or check that the existing store was made for it.

        Raises:
            EmbeddingStoreMismatch: the store holds embeddings of other data,
                another model, another tiling or another intensity conversion.
        """
        with self._lock:
            if self._spec is None and not self.read_only:
                self.lock_for_writing()
                if self.path.is_dir() and any(self.path.iterdir()):
                    self._open_existing()  # another process may have created it meanwhile
            if self._spec is not None:
                check_compatible(self._spec, spec, self.path)
                if self._spec.plane_signatures != spec.plane_signatures:
                    raise EmbeddingStoreMismatch(
                        f"The embedding store {self.path} was made for other data "
                        f"({_describe_data(self._spec)}), not {_describe_data(spec)}: "
                        "choose another store, or delete this one to compute it again."
                    )
                return
            self._create(spec)

    def _create(self, spec: StoreSpec) -> None:
        import zarr

        if self.read_only:
            raise EmbeddingStoreError(f"The embedding store {self.path} is opened read-only.")
        self.lock_for_writing()
        try:
            prepare_store_folder(self.path)  # a missing or empty folder only: nothing deleted
            self._group = zarr.open_group(
                store=str(self.path), mode=CREATE_ONLY_MODE, attributes={_ATTR: spec.to_attrs()}
            )
        except OSError as err:
            raise EmbeddingStoreError(
                f"Cannot create the embedding store {self.path}: {describe_write_error(err)}"
            ) from err
        self._spec = spec

    def lock_for_writing(self) -> None:
        """Become the store's one writer (see :mod:`..files.store_lock`); kept until
        :meth:`close` or the process ends.

        Raises:
            StoreLockedError: another process is writing the store.
        """
        if self.read_only:
            raise EmbeddingStoreError(f"The embedding store {self.path} is opened read-only.")
        if not self._writer.held:
            self._writer.acquire()

    @property
    def writing(self) -> bool:
        """Whether this store holds the write lock."""
        return self._writer.held

    def close(self) -> None:
        """Give back the write lock (the store can still be read)."""
        self._writer.release_all()

    def __del__(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.release_all()

    def find_plane(self, signature: str) -> int | None:
        """The plane whose pixels have ``signature``, or None."""
        if self._spec is None:
            return None
        try:
            return self._spec.plane_signatures.index(signature)
        except ValueError:
            return None

    # --- entries ---------------------------------------------------------------------

    def _entry(self, plane: int, tile: int):
        if self._group is None:
            return None
        try:
            return self._group[_entry_name(plane, tile)]
        except (KeyError, FileNotFoundError):
            return None
        except Exception as err:  # unreadable metadata: treat as a damaged entry
            raise CorruptEmbeddingError(
                f"The entry {_entry_name(plane, tile)} of {self.path} is damaged ({err!r})."
            ) from err

    def is_complete(self, plane: int, tile: int) -> bool:
        """Whether the entry was written to the end (its marker is set); the data is not read."""
        try:
            entry = self._entry(plane, tile)
        except CorruptEmbeddingError:
            return False
        return entry is not None and bool(entry.attrs.get("complete"))

    def read(
        self, plane: int, tile: int, original_size: tuple[int, int] | None = None
    ) -> ImageEmbedding | None:
        """The stored embedding of a plane's tile; None if it is not (completely) stored.

        ``original_size``: the (H, W) of the image (tile) the embedding must have been
        made from, if the caller knows it.

        Raises:
            CorruptEmbeddingError: the entry is marked complete but its data
                does not match its checksum, or its shape or sizes are not those of
                the store (or of ``original_size``).
        """
        with self._lock:
            entry = self._entry(plane, tile)
            if entry is None:
                return None
            attrs = dict(entry.attrs)
            if not attrs.get("complete"):
                return None
            name = _entry_name(plane, tile)
            sizes = self._checked_sizes(name, entry, attrs, original_size)
            try:
                features = np.asarray(entry[...], np.float32)
            except Exception as err:
                raise CorruptEmbeddingError(
                    f"The stored embedding {name} in {self.path} cannot be read ({err}); it is "
                    "damaged: compute it again (napari-sam-keras embed repairs a store)."
                ) from err
            if entry_checksum(features, *sizes) != attrs.get("checksum"):
                raise CorruptEmbeddingError(
                    f"The stored embedding {name} in {self.path} does not match its checksum: "
                    "it is damaged (or written by an older version); compute it again "
                    "(napari-sam-keras embed repairs a store)."
                )
            return ImageEmbedding(
                features=features,
                original_size=sizes[0],
                input_size=sizes[1],
                model_key=self._spec.model_key if self._spec else "",
            )

    def _checked_sizes(self, name, entry, attrs, original_size):
        """(original_size, input_size) of an entry, checked before its data is read: its
        array shape is the store's embedding shape, its sizes are plausible for the model
        (input = original resized to the model's input), and ``original_size`` if given."""
        from ..processing.images import preprocess_shape

        def damaged(what: str) -> CorruptEmbeddingError:
            return CorruptEmbeddingError(
                f"The stored embedding {name} in {self.path} is damaged ({what}); compute it "
                "again (napari-sam-keras embed repairs a store)."
            )

        spec = self._require_spec()
        if tuple(entry.shape) != (1, *spec.embedding_shape):
            raise damaged(f"shape {tuple(entry.shape)}, not (1, *{spec.embedding_shape})")
        try:
            orig = tuple(int(v) for v in attrs["original_size"])
            inp = tuple(int(v) for v in attrs["input_size"])
            long_side = int(spec.model_config["image_size"])
        except (KeyError, TypeError, ValueError) as err:
            raise damaged(f"no usable sizes: {err}") from err
        if len(orig) != 2 or len(inp) != 2 or min(orig) < 1:
            raise damaged(f"sizes {orig} -> {inp}")
        plane = tuple(int(v) for v in spec.plane_shape[:2])
        if orig[0] > plane[0] or orig[1] > plane[1]:
            raise damaged(f"original size {orig} larger than the image {plane}")
        if inp != preprocess_shape(orig[0], orig[1], long_side):
            raise damaged(f"input size {inp} is not {orig} resized to {long_side}")
        if original_size is not None and orig != tuple(int(v) for v in original_size):
            raise damaged(f"made from {orig} pixels, the image here is {tuple(original_size)}")
        return orig, inp

    def write(self, plane: int, tile: int, embedding: ImageEmbedding) -> None:
        """Store an embedding: the data first, then its completion marker and checksum."""
        if self.read_only:
            raise EmbeddingStoreError(f"The embedding store {self.path} is opened read-only.")
        spec = self._require_spec()
        if embedding.model_key and embedding.model_key != spec.model_key:
            raise EmbeddingStoreMismatch(
                f"This embedding was computed by another model than the store's {spec.model_name}."
            )
        features = np.ascontiguousarray(embedding.features, np.float32)
        if features.shape[1:] != tuple(spec.embedding_shape):
            raise EmbeddingStoreMismatch(
                f"This embedding has shape {features.shape[1:]}, the store holds "
                f"{tuple(spec.embedding_shape)}."
            )
        with self._lock:
            self.lock_for_writing()
            group = self._group.require_group(f"p{int(plane):05d}")
            array = group.create_array(
                f"t{int(tile):05d}",
                shape=features.shape,
                dtype="float32",
                chunks=features.shape,
                attributes={"complete": False},
                overwrite=True,
            )
            array[...] = features
            self._mark_complete(array, embedding, features)

    def _mark_complete(self, array, embedding: ImageEmbedding, features: np.ndarray) -> None:
        array.update_attributes(
            {
                "complete": True,
                "checksum": entry_checksum(features, embedding.original_size, embedding.input_size),
                "original_size": [int(v) for v in embedding.original_size],
                "input_size": [int(v) for v in embedding.input_size],
            }
        )

    def _require_spec(self) -> StoreSpec:
        if self._spec is None:
            raise EmbeddingStoreError(
                f"Nothing is bound to the embedding store {self.path} yet (call bind(spec))."
            )
        return self._spec

    def entries(self, tiles: int) -> Iterator[tuple[int, int]]:
        """Every (plane, tile) the store should hold, given the number of tiles per plane."""
        spec = self._require_spec()
        for plane in range(len(spec.plane_signatures)):
            for tile in range(tiles):
                yield plane, tile

    def verify(self, tiles: int) -> dict[str, list[tuple[int, int]]]:
        """Read every entry and check it: {"complete": [...], "missing": [...], "corrupt": [...]}."""
        report: dict[str, list[tuple[int, int]]] = {"complete": [], "missing": [], "corrupt": []}
        for key in self.entries(tiles):
            try:
                emb = self.read(*key)
            except CorruptEmbeddingError:
                report["corrupt"].append(key)
                continue
            report["missing" if emb is None else "complete"].append(key)
        return report


#: The most pixels a store's metadata may claim for one plane, and values for one embedding:
#: larger claims are damaged metadata (or a hostile file), refused before any array is made.
MAX_PLANE_PIXELS = 1 << 36
MAX_EMBEDDING_VALUES = 1 << 26


def check_spec_sizes(spec: StoreSpec) -> None:
    """Raise ``ValueError`` if a store's metadata claims impossible sizes."""
    plane = [int(v) for v in spec.plane_shape]
    emb = [int(v) for v in spec.embedding_shape]
    if len(plane) not in (2, 3) or min(plane) < 1 or plane[0] * plane[1] > MAX_PLANE_PIXELS:
        raise ValueError(f"plane shape {tuple(plane)}")
    if len(emb) != 3 or min(emb) < 1 or emb[0] * emb[1] * emb[2] > MAX_EMBEDDING_VALUES:
        raise ValueError(f"embedding shape {tuple(emb)}")


def check_compatible(stored: StoreSpec, wanted: StoreSpec, path: Path | str) -> None:
    """Raise :class:`EmbeddingStoreMismatch` unless ``wanted`` can use ``stored``'s embeddings.

    Model, tiling, conversion and plane shape must agree; the data itself is
    compared by the caller (a plane may be looked up by its signature).
    """
    if stored.model_key != wanted.model_key:
        raise EmbeddingStoreMismatch(
            f"The embedding store {path} was made by another model ({stored.model_name}, "
            f"{stored.model_key}), not {wanted.model_name} ({wanted.model_key}): choose another "
            "store, or delete this one to compute it again."
        )
    if (stored.tile_shape, stored.halo) != (wanted.tile_shape, wanted.halo):
        raise EmbeddingStoreMismatch(
            f"The embedding store {path} was made with tile_shape={stored.tile_shape}, "
            f"halo={stored.halo}, not tile_shape={wanted.tile_shape}, halo={wanted.halo}."
        )
    if (stored.contrast_limits, stored.image_format) != (
        wanted.contrast_limits,
        wanted.image_format,
    ):
        raise EmbeddingStoreMismatch(
            f"The embedding store {path} was made with contrast limits "
            f"{stored.contrast_limits} ({stored.image_format}), not {wanted.contrast_limits} "
            f"({wanted.image_format})."
        )
    if tuple(stored.plane_shape) != tuple(wanted.plane_shape) or stored.dtype != wanted.dtype:
        raise EmbeddingStoreMismatch(
            f"The embedding store {path} was made for other data ({_describe_data(stored)}), "
            f"not {_describe_data(wanted)}."
        )


def _describe_data(spec: StoreSpec) -> str:
    shape = tuple(spec.plane_shape)
    if spec.stack:
        return f"a stack of {len(spec.plane_signatures)} planes {shape} {spec.dtype}"
    return f"an image {shape} {spec.dtype}"
