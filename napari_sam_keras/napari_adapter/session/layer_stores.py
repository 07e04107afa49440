"""The widgets' embeddings folder: one on-disk :class:`EmbeddingStore` per image layer there.

With an embeddings folder chosen (in either widget; remembered across napari
sessions by :mod:`.settings`), every slice embedding the widgets need is read
from, or computed and written to, the store of its image layer in that folder:
``<folder>/<layer name>-<model key>.zarr``, bound to the layer's planes (every
slice along the hidden axes), the model and the layer's contrast limits.  A
store there that was made for other data (another image of the same name,
other contrast limits) is never overwritten: the embeddings go into a new
store (``...-2.zarr``, ...), and :func:`take_notices` gives the message the
widget shows.  The folder and the bindings are a :class:`~.session.Session`'s
(:class:`LayerStores`).

Slices of a rolled view or of a multiscale layer are not stored (they are
kept in memory only).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import EmbeddingStoreError, EmbeddingStoreMismatch
from ...model.embedding_store import EmbeddingStore, image_signature
from ...model.quantization import QUANTIZE_MODES
from ...segmentation.store_binding import store_spec
from ..layers.image_slices import ImageSlice
from .settings import embeddings_folder, set_embeddings_folder

logger = logging.getLogger("napari_sam_keras")

#: How many stores one layer name may have in a folder (other data, contrast, ...).
MAX_VARIANTS = 100


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "image"


def store_base(layer_name: str, model_key: str) -> str:
    """The store's name without ``.zarr``: layer and model, in characters valid on every OS.

    (A model key holds a ``:``, which Windows refuses in file names.)  An int8 encoder's
    key (``...+int8``) keeps its ``int8``, so its store is not the float32 one's.
    """
    weights, _, quantized = model_key.rpartition("+")
    if quantized not in QUANTIZE_MODES:
        weights, quantized = model_key, ""
    suffix = f"-{quantized}" if quantized else ""
    return f"{_safe_name(layer_name)}-{_safe_name(weights)[:19]}{suffix}"


def storable(image_slice: ImageSlice) -> bool:
    """Whether the slice is one of its (single-scale) layer's own planes."""
    n = len(image_slice.spatial_shape)
    if getattr(image_slice.layer, "multiscale", False) or image_slice.level != 0:
        return False
    return tuple(image_slice.slice_axes) == (n - 2, n - 1)


def _layer_spec(image_slice: ImageSlice, network):
    """The store spec of the slice's whole layer, and its hidden shape."""
    layer = image_slice.layer
    data = layer.data
    n = len(image_slice.spatial_shape)
    hidden = tuple(int(s) for s in image_slice.spatial_shape[: n - 2])
    planes = int(np.prod(hidden, dtype=int))
    flat = data.reshape((planes, *data.shape[n - 2 :])) if hidden else None
    signatures = (
        [image_signature(flat[i]) for i in range(planes)] if hidden else [image_signature(data)]
    )
    spec = store_spec(
        network,
        signatures,
        tuple(data.shape[n - 2 :]),
        data.dtype,
        bool(hidden),
        image_slice.contrast_limits,
        "RGB",
        None,
        None,
    )
    return spec, hidden


class LayerStores:
    """The embeddings folder of a session's widgets and the store bound to each image layer.

    Also the notices about stores (a store made for other data, a folder that cannot be
    used) that a widget shows after its job.  Thread-safe: stores are bound from workers.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._folder: list[str | None] = []  # [] until read from the settings
        self._listeners: list[weakref.WeakMethod] = []
        #: (layer id, data id, model key, contrast limits, folder) -> (store, hidden shape)
        #: or None
        self._bound: dict[tuple, tuple[EmbeddingStore, tuple[int, ...]] | None] = {}
        self._notices: list[str] = []

    def current_folder(self) -> str | None:
        """The embeddings folder the widgets use (``None``: off)."""
        with self._lock:
            if not self._folder:
                self._folder.append(embeddings_folder())
            return self._folder[0]

    def set_folder(self, folder: str | None) -> None:
        """Choose the embeddings folder for every widget (remembered across sessions)."""
        folder = str(folder).strip() if folder else None
        with self._lock:
            changed = not self._folder or self._folder[0] != folder
            self._folder[:] = [folder]
        set_embeddings_folder(folder)
        if changed:
            for ref in list(self._listeners):
                callback = ref()
                if callback is None:
                    self._listeners.remove(ref)
                else:
                    callback(folder)

    def on_folder_changed(self, callback: Callable[[str | None], None]) -> None:
        """Call the bound method ``callback(folder)`` when the folder changes (held weakly)."""
        self._listeners.append(weakref.WeakMethod(callback))

    def take_notices(self) -> list[str]:
        """Messages about stores (a store for other data, a folder that cannot be used); cleared."""
        with self._lock:
            out = list(self._notices)
            self._notices.clear()
            return out

    def _notice(self, text: str) -> None:
        logger.warning(text)
        with self._lock:
            if text not in self._notices:
                self._notices.append(text)

    def _bind(self, folder: str, image_slice: ImageSlice, network):
        spec, hidden = _layer_spec(image_slice, network)
        base = store_base(image_slice.layer.name, network.key)
        refused = []
        for variant in range(1, MAX_VARIANTS + 1):
            path = Path(folder) / (base + (".zarr" if variant == 1 else f"-{variant}.zarr"))
            try:
                store = EmbeddingStore(path)
                store.bind(spec)
            except EmbeddingStoreMismatch as error:
                refused.append((path, error))
                continue
            except EmbeddingStoreError as error:
                if path.exists():
                    refused.append((path, error))
                    continue
                self._notice(
                    f"The embeddings folder cannot be used ({error}); embeddings stay in memory."
                )
                return None
            if refused:
                old, why = refused[0]
                self._notice(
                    f"The embedding store {old.name} in {folder} was made for other data, model or "
                    f"contrast ({why}). It is kept as it is; the embeddings of {image_slice.layer.name!r}"
                    f" are computed again into the new store {path.name}."
                )
            return store, hidden
        self._notice(
            f"Too many embedding stores named {base}* in {folder}; embeddings stay in memory."
        )
        return None

    def store_for(self, image_slice: ImageSlice, network) -> tuple[EmbeddingStore, int] | None:
        """The store and plane number for the slice's embedding, or ``None`` (memory only).

        Binding a layer hashes all its planes once (then it is remembered); call
        it from a worker thread.
        """
        folder = self.current_folder()
        if not folder or not storable(image_slice) or not getattr(network, "key", ""):
            return None
        layer = image_slice.layer
        key = (
            str(getattr(layer, "unique_id", id(layer))),
            id(layer.data),
            network.key,
            image_slice.contrast_limits,
            folder,
        )
        with self._lock:
            if key not in self._bound:
                self._bound[key] = self._bind(folder, image_slice, network)
            bound = self._bound[key]
        if bound is None:
            return None
        store, hidden = bound
        plane = int(np.ravel_multi_index(image_slice.plane, hidden)) if hidden else 0
        return store, plane

    def forget_stores(self) -> None:
        """Drop the remembered layer -> store bindings (tests; a folder emptied by hand)."""
        with self._lock:
            self._bound.clear()
