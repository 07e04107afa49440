"""The widgets' embeddings folder: one on-disk :class:`EmbeddingStore` per image layer there.

With an embeddings folder chosen (in either widget; remembered across napari
sessions by :mod:`.settings`), every slice embedding the widgets need is read
from, or computed and written to, the store of its image layer in that folder:
``<folder>/<layer name>-<model key>.zarr``, bound to the layer's planes (every
slice along the hidden axes), the model and the layer's contrast limits.  A
store there that was made for other data (another image of the same name,
other contrast limits) is never overwritten: the embeddings go into a new
store (``...-2.zarr``, ...), and :func:`take_notices` gives the message the
widget shows.

Slices of a rolled view or of a multiscale layer are not stored (they are
kept in memory only).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import EmbeddingStoreError, EmbeddingStoreMismatch
from ..model.embedding import ImageEmbedding
from ..model.embedding_store import EmbeddingStore, image_signature
from ..model.quantization import QUANTIZE_MODES
from ..segmentation.embedding_source import PlaneEmbeddings
from ..segmentation.store_binding import store_spec
from .image_slices import ImageSlice
from .settings import embeddings_folder, set_embeddings_folder

logger = logging.getLogger("napari_sam_keras")

#: How many stores one layer name may have in a folder (other data, contrast, ...).
MAX_VARIANTS = 100

_lock = threading.RLock()
_folder: list[str | None] = []  # [] until read from the settings
_listeners: list = []
#: (layer id, data id, model key, contrast limits, folder) -> (store, hidden shape) or None
_bound: dict[tuple, tuple[EmbeddingStore, tuple[int, ...]] | None] = {}
_notices: list[str] = []


def current_folder() -> str | None:
    """The embeddings folder both widgets use (``None``: off)."""
    with _lock:
        if not _folder:
            _folder.append(embeddings_folder())
        return _folder[0]


def set_folder(folder: str | None) -> None:
    """Choose the embeddings folder for both widgets (remembered across sessions)."""
    folder = str(folder).strip() if folder else None
    with _lock:
        changed = not _folder or _folder[0] != folder
        _folder[:] = [folder]
    set_embeddings_folder(folder)
    if changed:
        for ref in list(_listeners):
            callback = ref()
            if callback is None:
                _listeners.remove(ref)
            else:
                callback(folder)


def on_folder_changed(callback: Callable[[str | None], None]) -> None:
    """Call the bound method ``callback(folder)`` when the folder changes (held weakly)."""
    import weakref

    _listeners.append(weakref.WeakMethod(callback))


def take_notices() -> list[str]:
    """Messages about stores (a store for other data, a folder that cannot be used); cleared."""
    with _lock:
        out = list(_notices)
        _notices.clear()
        return out


def _notice(text: str) -> None:
    logger.warning(text)
    with _lock:
        if text not in _notices:
            _notices.append(text)


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


def _bind(folder: str, image_slice: ImageSlice, network):
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
            _notice(f"The embeddings folder cannot be used ({error}); embeddings stay in memory.")
            return None
        if refused:
            old, why = refused[0]
            _notice(
                f"The embedding store {old.name} in {folder} was made for other data, model or "
                f"contrast ({why}). It is kept as it is; the embeddings of {image_slice.layer.name!r}"
                f" are computed again into the new store {path.name}."
            )
        return store, hidden
    _notice(f"Too many embedding stores named {base}* in {folder}; embeddings stay in memory.")
    return None


def store_for(image_slice: ImageSlice, network) -> tuple[EmbeddingStore, int] | None:
    """The store and plane number for the slice's embedding, or ``None`` (memory only).

    Binding a layer hashes all its planes once (then it is remembered); call
    it from a worker thread.
    """
    folder = current_folder()
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
    with _lock:
        if key not in _bound:
            _bound[key] = _bind(folder, image_slice, network)
        bound = _bound[key]
    if bound is None:
        return None
    store, hidden = bound
    plane = int(np.ravel_multi_index(image_slice.plane, hidden)) if hidden else 0
    return store, plane


def stored_or_computed(predictor, image_slice: ImageSlice, store, plane: int) -> ImageEmbedding:
    """The slice's embedding from ``store`` (plane ``plane``), or computed and written there."""
    source = PlaneEmbeddings(
        predictor.image_encoder,
        image_slice.data,
        contrast_limits=image_slice.contrast_limits,
        store=store,
        plane=plane,
        cache_bytes=1,
    )
    return source.embedding(0)


def forget_stores() -> None:
    """Drop the remembered layer -> store bindings (tests; a folder emptied by hand)."""
    with _lock:
        _bound.clear()
