"""Image embeddings: what SAM computes once per image, and a cache for them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np


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

    def save(self, path) -> None:
        """Write to a ``.npz`` file."""
        np.savez(
            path,
            features=self.features,
            original_size=np.asarray(self.original_size),
            input_size=np.asarray(self.input_size),
            model_key=np.asarray(self.model_key),
        )

    @classmethod
    def load(cls, path) -> ImageEmbedding:
        """Read what :meth:`save` wrote."""
        with np.load(path) as data:
            return cls(
                features=data["features"],
                original_size=tuple(int(v) for v in data["original_size"]),
                input_size=tuple(int(v) for v in data["input_size"]),
                model_key=str(data["model_key"]),
            )

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes)


class EmbeddingCache:
    """A thread-safe least-recently-used cache of :class:`ImageEmbedding` objects.

    Keys are any hashable, e.g. ``(layer_id, slice_index, model_key)``.  Bounded
    both by count and by memory (a ViT embedding is 4 MiB).
    """

    def __init__(self, max_items: int = 256, max_bytes: int = 2 * 1024**3) -> None:
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
