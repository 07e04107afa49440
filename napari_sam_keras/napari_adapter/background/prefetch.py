"""Neighbour-slice prefetch: the next slice's embedding ready before the user moves there.

After the interactive widget has the embedding of slice k (a click, a preview),
:class:`Prefetcher` embeds slices k - 1 and k + 1 (along the last hidden
axis: z of a (Z, Y, X) or (T, Z, Y, X) image) in the background, into the
shared embedding cache and, with an embeddings folder, the layer's store.

Clicks always go first.  The prefetch runs in a thread of its own (never a
slot of Qt's worker pool), one slice at a time, and before each slice it
waits while a click's job runs or waits (``click_pending()``).  It uses a
predictor of its own and holds no lock a click needs: a click that arrives
while a slice is being embedded runs at once, beside it.  What is being
embedded shows in napari's activity panel; a newer click's neighbours
replace the ones still waiting.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from functools import wraps

from ...errors import OperationCancelled
from ..jobs.slice_embedding import embedding_key, set_slice_embedding
from ..layers.image_slices import DEFAULT_MAX_SIDE, ImageSlice, make_slice
from .task_runner import Relay, Task

logger = logging.getLogger("napari_sam_keras")

DESCRIPTION = "SAM: embedding neighbouring slices in the background"
#: How often a waiting prefetch looks whether the clicks are done (seconds).
POLL = 0.02

_running: set[Task] = set()


def _stop_at_exit() -> None:
    """Cancel prefetches and let their current slice finish before the interpreter ends."""
    for task in list(_running):
        task.cancel()
    for task in list(_running):
        if isinstance(task.worker, threading.Thread):
            task.worker.join(timeout=60)


def start_in_background(task: Task) -> None:
    """Start ``task`` in a thread of its own, cancelled (and its step let finish) at exit.

    Call :func:`forget_background` with it when it has finished.
    """
    if not _running:
        atexit.register(_stop_at_exit)
    _running.add(task)
    task.start(own_thread=True)


def forget_background(task: Task) -> None:
    """A task started by :func:`start_in_background` has finished."""
    _running.discard(task)


def neighbours(image_slice: ImageSlice, distance: int = 1) -> list[tuple]:
    """Indices of the slices ``distance`` before and after along the last hidden axis."""
    index = image_slice.index
    hidden = [a for a, i in enumerate(index) if i is not None]
    if not hidden:
        return []
    axis = max(hidden)
    out = []
    for step in (-distance, distance):
        k = int(index[axis]) + step
        if 0 <= k < int(image_slice.spatial_shape[axis]):
            out.append(tuple(k if a == axis else i for a, i in enumerate(index)))
    return out


def embed_slice(predictor, image_slice: ImageSlice, session) -> bool:
    """Embed one slice for the prefetch (memory, store or encoder); True if not in memory."""
    return set_slice_embedding(predictor, image_slice, session)


class Prefetcher:
    """Embeds the neighbours of the slices the interactive widget embedded (see the module).

    Args:
        models: the widget's :class:`~..session.loaded_models.ModelStore`.
        session: the widgets' :class:`~..session.Session` (its embeddings and stores).
        click_pending: ``True`` while a click's job runs or waits (read from the
            prefetch thread).
        enabled: whether to prefetch (e.g. a checkbox's value).
    """

    def __init__(
        self,
        models,
        session,
        click_pending: Callable[[], bool],
        enabled: Callable[[], bool] = lambda: True,
    ) -> None:
        self.models = models
        self.session = session
        self.cache = session.embeddings
        self.click_pending = click_pending
        self.enabled = enabled
        self.task: Task | None = None
        self._next: tuple[list[ImageSlice], str] | None = None
        self._predictors: dict = {}
        self._requests: list[tuple[ImageSlice, str]] = []
        self._lock = threading.Lock()
        self._relay = Relay(self._on_embedded)  # worker thread -> GUI thread

    # --- the hook -----------------------------------------------------------------------

    def following(self, job: Callable, image_slice: ImageSlice, model_source: str) -> Callable:
        """``job`` that, once it has succeeded, asks for the neighbours of ``image_slice``."""

        @wraps(job)
        def run(progress):
            result = job(progress)
            with self._lock:
                self._requests.append((image_slice, model_source))
            self._relay.changed.emit()
            return result

        return run

    def _on_embedded(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        if requests:
            self.schedule(*requests[-1])

    # --- scheduling (GUI thread) --------------------------------------------------------

    def schedule(self, image_slice: ImageSlice, model_source: str) -> None:
        """Embed the neighbours of ``image_slice`` that are not cached yet (in the background)."""
        if not self.enabled():
            return
        network = self.models.loaded(model_source)
        if network is None:
            return
        slices = []
        for index in neighbours(image_slice):
            try:
                neighbour = make_slice(
                    image_slice.layer, index, image_slice.slice_axes, DEFAULT_MAX_SIDE
                )
            except Exception as error:  # a layer changed or removed meanwhile
                logger.debug("no prefetch of %s: %s", index, error)
                continue
            if embedding_key(neighbour, network.key) not in self.cache:
                slices.append(neighbour)
        if not slices:
            return
        if self.task is not None:  # a newer request: it replaces what still waits
            self._next = (slices, model_source)
            self.task.cancel()
            return
        self._start(slices, model_source)

    def _start(self, slices: list[ImageSlice], model_source: str) -> None:
        task = Task(
            self._job(slices, model_source),
            DESCRIPTION,
            on_error=self._failed,
            on_finished=lambda: self._finished(task),
        )
        self.task = task
        start_in_background(task)

    def _finished(self, task: Task) -> None:
        forget_background(task)
        if self.task is task:
            self.task = None
        if self._next is not None:
            slices, source = self._next
            self._next = None
            slices = [s for s in slices if not self._cached(s, source)]
            if slices:
                self._start(slices, source)

    def _cached(self, image_slice: ImageSlice, source: str) -> bool:
        network = self.models.loaded(source)
        return network is None or embedding_key(image_slice, network.key) in self.cache

    @staticmethod
    def _failed(error: BaseException) -> None:
        if not isinstance(error, OperationCancelled):
            logger.warning("prefetching neighbouring slices failed: %s", error)

    def cancel(self) -> None:
        """Stop after the slice being embedded; drop what waits."""
        self._next = None
        if self.task is not None:
            self.task.cancel()

    @property
    def busy(self) -> bool:
        return self.task is not None

    # --- the work (prefetch thread) -----------------------------------------------------

    def _wait_for_clicks(self, progress) -> None:
        while self.click_pending():
            if progress.cancelled:
                raise OperationCancelled("prefetch replaced or stopped")
            time.sleep(POLL)
        if progress.cancelled:
            raise OperationCancelled("prefetch replaced or stopped")

    def _job(self, slices: list[ImageSlice], model_source: str) -> Callable:
        def job(progress):
            from ... import TiledSAMPredictor

            n = len(slices)
            progress(0, n)
            network = self.models.get(model_source)
            predictor = self._predictors.get(network.key)
            if predictor is None:
                predictor = TiledSAMPredictor(network, warm_up=False)
                self._predictors = {network.key: predictor}
            for done, image_slice in enumerate(slices):
                self._wait_for_clicks(progress)  # a click's job always goes first
                progress.step(f"slice {_name(image_slice)}")
                embed_slice(predictor, image_slice, self.session)
                progress(done + 1, n)
            return n

        return job


def _name(image_slice: ImageSlice) -> str:
    return ", ".join(str(i) for i in image_slice.plane)
