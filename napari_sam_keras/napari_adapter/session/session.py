"""The one object the widgets of a napari process share: :class:`Session`.

Everything two widgets must agree on lives here, not in module globals: the
networks loaded (each once), the slice embeddings computed (the automatic
widget reuses what the interactive one computed, and the other way round),
the embeddings folder with the store bound to each image layer, the open
model pickers, and which networks have compiled their encoder.  The settings
kept across napari sessions are on disk (:mod:`.settings`).

There is one session per process (:func:`current_session`), not one per
viewer: a network is hundreds of megabytes and the embeddings folder and the
recent models are the user's, whichever viewer is open.  Tests give each test
a fresh one with :func:`use_session`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from ...model.embedding import EmbeddingCache
from .layer_stores import LayerStores
from .loaded_models import LoadedModels, ModelStore

#: How many slice embeddings a session keeps in memory.
EMBEDDINGS_IN_MEMORY = 32


class Session:
    """What the widgets share (see the module).

    Attributes:
        models: the networks loaded by any widget (:class:`LoadedModels`).
        embeddings: slice embeddings computed by any widget, keyed by layer, slice and
            model (:func:`..jobs.slice_embedding.embedding_key`).
        stores: the embeddings folder and one store per image layer there
            (:class:`LayerStores`).
        warm: keys of the networks that have computed an embedding (the first one
            compiles the encoder; the status line says so).
    """

    def __init__(self) -> None:
        self.models = LoadedModels()
        self.embeddings = EmbeddingCache(max_items=EMBEDDINGS_IN_MEMORY)
        self.stores = LayerStores()
        self.warm: set[str] = set()
        self._pickers: list[weakref.ref] = []

    def model_store(self) -> ModelStore:
        """A widget's own :class:`ModelStore`, sharing this session's networks."""
        return ModelStore(self.models)

    def add_picker(self, picker) -> None:
        """Note an open model picker (held weakly), for :meth:`model_pickers`."""
        self._pickers.append(weakref.ref(picker))

    def model_pickers(self) -> list:
        """The model pickers still open."""
        alive = []
        for ref in list(self._pickers):
            picker = ref()
            if picker is None:
                self._pickers.remove(ref)
            else:
                alive.append(picker)
        return alive

    def forget_picker(self, picker) -> None:
        """A picker whose Qt widget is gone."""
        self._pickers = [ref for ref in self._pickers if ref() not in (None, picker)]


_lock = threading.Lock()
_current: Session | None = None


def current_session() -> Session:
    """This process's session (made on first use)."""
    global _current
    with _lock:
        if _current is None:
            _current = Session()
        return _current


@contextmanager
def use_session(session: Session) -> Iterator[Session]:
    """Make ``session`` the current one inside the ``with`` block (tests: a fresh one)."""
    global _current
    with _lock:
        before, _current = _current, session
    try:
        yield session
    finally:
        with _lock:
            _current = before
