"""What the widgets share: one :class:`Session` per process (models, embeddings, stores).

* :mod:`.session`: :class:`Session` and :func:`current_session`.
* :mod:`.loaded_models`: the networks, loaded once and shared; model source strings.
* :mod:`.layer_stores`: the embeddings folder, one ``EmbeddingStore`` per image layer.
* :mod:`.settings`: the widgets' memory across napari sessions (a JSON file).
"""

from __future__ import annotations

from .session import Session, current_session, use_session

__all__ = ["Session", "current_session", "use_session"]
