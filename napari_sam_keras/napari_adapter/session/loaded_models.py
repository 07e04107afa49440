"""Models for the widgets: loaded lazily with ``load_model(source)``, cached by source string.

A source string ending in :data:`INT8_SUFFIX` (the model picker's "int8 encoder") names the
model with its image encoder quantized: ``load_model(source, quantize="int8")``.

:class:`LoadedModels` is what a :class:`~.session.Session`'s widgets share (each network
once); :class:`ModelStore` is one widget's view of it.
"""

from __future__ import annotations

import os
import threading
import weakref

from ...errors import ModelLoadError
from ...model.model_choice import proposed_default


class LoadedModels:
    """The networks a session's widgets have loaded, so that two widgets never hold two copies.

    Held weakly (a network no widget holds is let go); also the last model loaded (what a
    new widget's model field proposes) and who wants to hear of a new one.
    """

    def __init__(self) -> None:
        self.networks: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        #: The source string of the last network loaded or added, else ``None``.
        self.last_source: str | None = None
        self._listeners: list[weakref.WeakMethod] = []

    def on_loaded(self, callback) -> None:
        """Call the bound method ``callback(source)`` after any widget loads a network.

        It may be called from a worker thread; it is held weakly (a closed widget is dropped).
        """
        self._listeners.append(weakref.WeakMethod(callback))

    def notify_loaded(self, source: str) -> None:
        """Tell the listeners that the network for ``source`` is loaded."""
        for ref in list(self._listeners):
            callback = ref()
            if callback is None:
                self._listeners.remove(ref)
            else:
                callback(source)

    def proposed_model(self) -> str:
        """What a new widget's model field shows: the last model loaded, else the default.

        The default is ``$NAPARI_SAM_KERAS_MODEL``, else ``sam_base_sa1b`` when its
        weights are on this machine, else the shipped ``demo_nuclei`` (see
        :meth:`proposed_model_note`).
        """
        return self.last_source or proposed_default().source

    def proposed_model_note(self) -> str:
        """Why the proposed model is not SAM's (the demo model proposed offline), else ``""``."""
        return "" if self.last_source else proposed_default().note


#: The end of a widget's model source that asks for the int8 image encoder.
INT8_SUFFIX = " +int8"


def with_quantization(source: str, quantize: str | None) -> str:
    """``source`` as the widgets' model key, naming the image encoder's quantization."""
    return f"{source}{INT8_SUFFIX}" if quantize == "int8" else source


def split_quantization(key: str) -> tuple[str, str | None]:
    """A widget's model key -> (the ``load_model`` source, ``"int8"`` or ``None``)."""
    if key.endswith(INT8_SUFFIX):
        return key[: -len(INT8_SUFFIX)], "int8"
    return key, None


def source_text(value) -> str:
    """The model widget's value (a preset name or a path) as the cache key string."""
    text = os.fspath(value) if value is not None else ""
    text = str(text).strip()
    if text in ("", "."):
        raise ModelLoadError(
            "No model chosen: type a preset name (sam_base_sa1b, sam_large_sa1b, "
            "sam_huge_sa1b) or choose a checkpoint file (.pth, .keras, preset folder)."
        )
    return text


class ModelStore:
    """One widget's SAM networks by source string, each loaded once on first use (thread-safe).

    A network another widget of the session (``loaded``, a :class:`LoadedModels`) has
    loaded already is shared, not loaded again.
    """

    def __init__(self, loaded: LoadedModels) -> None:
        self.shared = loaded
        self._networks: dict[str, object] = {}
        self._lock = threading.Lock()

    def add(self, source, network) -> None:
        """Register an already loaded network under ``source`` (scripts, tests)."""
        key = source_text(source)
        with self._lock:
            self._networks[key] = network
            self.shared.networks[key] = network
        self.shared.notify_loaded(key)

    def loaded(self, source):
        """The network for ``source`` if this or another widget has loaded it, else ``None``."""
        try:
            key = source_text(source)
        except ModelLoadError:
            return None
        with self._lock:
            return self._networks.get(key) or self.shared.networks.get(key)

    def __contains__(self, source) -> bool:
        try:
            key = source_text(source)
        except ModelLoadError:
            return False
        return key in self._networks

    def get(self, source):
        """The network for ``source``, loading it on first use (slow: call from a worker)."""
        key = source_text(source)
        with self._lock:
            if key in self._networks:
                return self._networks[key]
            shared = self.shared.networks.get(key)
            if shared is not None:
                self._networks[key] = shared
                self.shared.last_source = key
                return shared
        from ... import load_model

        try:
            source, quantize = split_quantization(key)
            network = load_model(source, quantize=quantize)
        except ModelLoadError:
            raise
        except Exception as error:  # any failure to load is a model-load problem
            raise ModelLoadError(f"Could not load model {key!r}: {error}") from error
        with self._lock:
            network = self._networks.setdefault(key, network)
            self.shared.networks[key] = network
            self.shared.last_source = key
        self.shared.notify_loaded(key)
        return network

    def clear(self) -> None:
        with self._lock:
            self._networks.clear()
