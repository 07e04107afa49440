"""Image embeddings: what SAM computes once per image, and a cache for them."""

from __future__ import annotations

import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EmbeddingError
from ..files.atomic_write import atomic_write

_FIELDS = ("features", "original_size", "input_size", "model_key")


@dataclass(frozen=True)
class ImageEmbedding:
    """The image encoder's output for one image, enough to predict without recomputing.

    Attributes:
        features: (1, h, w, C) float32, channels last (Keras layout).
        original_size: (H, W) of the image given to ``set_image``.
        input_size: (H, W) after the longest-side resize, before padding.
        model_key: identity of the network that made it.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_key: str

    def __post_init__(self) -> None:
        features = np.asarray(self.features)
        if features.ndim != 4 or features.shape[0] != 1 or 0 in features.shape:
            raise EmbeddingError(
                f"An embedding's features must have shape (1, h, w, C); got {features.shape}."
            )
        if not np.issubdtype(features.dtype, np.floating):
            raise EmbeddingError(f"An embedding's features must be floats, not {features.dtype}.")
        for name in ("original_size", "input_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 1:
                raise EmbeddingError(
                    f"An embedding's {name} must be two positive sizes (H, W); got {size}."
                )

    def save(self, path: str | os.PathLike) -> Path:
        """Write to a ``.npz`` file (``.npz`` is added if missing), atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        with atomic_write(path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                features=self.features,
                original_size=np.asarray(self.original_size),
                input_size=np.asarray(self.input_size),
                model_key=np.asarray(self.model_key),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageEmbedding:
        """Read what :meth:`save` wrote; a missing, damaged or foreign file is an EmbeddingError."""
        path = Path(path)
        if not path.is_file():
            raise EmbeddingError(f"Embedding file not found: {path}")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise EmbeddingError(
                f"{path} is not an embedding file saved by ImageEmbedding.save (damaged or "
                f"another format: {err})."
            ) from err
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise EmbeddingError(f"{path} holds a single array, not an embedding (.npz) file.")
        with data:
            missing = sorted(set(_FIELDS) - set(data.files))
            if missing:
                raise EmbeddingError(
                    f"{path} is not an embedding file saved by ImageEmbedding.save: it lacks "
                    f"{', '.join(missing)}."
                )
            try:
                fields = {name: data[name] for name in _FIELDS}
                return cls(
                    features=np.asarray(fields["features"]),
                    original_size=tuple(int(v) for v in fields["original_size"]),
                    input_size=tuple(int(v) for v in fields["input_size"]),
                    model_key=str(fields["model_key"]),
                )
            except EmbeddingError as err:
                raise EmbeddingError(f"{path}: {err}") from err
            except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as err:
                raise EmbeddingError(
                    f"{path} is damaged or not an embedding file ({type(err).__name__}: {err})."
                ) from err

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes)


class EmbeddingCache:
    """A thread-safe least-recently-used cache of :class:`ImageEmbedding` objects.

    Keys are any hashable, e.g. ``(layer_id, slice_index, model_key)``.  Bounded
    both by count and by memory (a ViT embedding is 4 MiB).
    """

    def __init__(self, max_items: int = 256, max_bytes: int = 2 * 1024**3) -> None:
        for name, value in (("max_items", max_items), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise EmbeddingError(
                    f"EmbeddingCache {name} must be a positive integer, got {value!r}."
                )
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, ImageEmbedding] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> ImageEmbedding | None:
        with self._lock:
            emb = self._items.get(key)
            if emb is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return emb

    def put(self, key: Hashable, embedding: ImageEmbedding) -> None:
        with self._lock:
            self._items[key] = embedding
            self._items.move_to_end(key)
            while len(self._items) > self.max_items or (
                len(self._items) > 1 and self._nbytes() > self.max_bytes
            ):
                self._items.popitem(last=False)

    def _nbytes(self) -> int:
        return sum(e.nbytes for e in self._items.values())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)
