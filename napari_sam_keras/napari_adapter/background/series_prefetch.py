"""The image series' next image, embedded in the background while the user works on this one.

The embedding cache is keyed by the image *layer* (its id, its data, its contrast
limits: :attr:`.image_slices.ImageSlice.key`), and the next image has no layer
yet.  So :class:`NextImagePrefetcher` prepares everything the layer will hold:
in a thread of its own it reads the next file, works out the contrast limits
napari gives such data by default and the slice the viewer will show (a 2D
image; a stack of the same shape as the current one at the current slider
position), and embeds that slice with a predictor of its own - through the
embeddings folder's store when one is chosen (:mod:`.session.layer_stores`, under the
name the image's layer will have), else in memory only.  When the series then
shows that image, it opens the very array read in the background (if the file
has not changed: path, size and modification time), and :meth:`adopt` puts
the embedding into the shared cache under the new layer's real key, but only
if the layer's slice is the one embedded (same index, same pixels, same
contrast limits).  The interactive and automatic widgets then find it there.

It only uses a model some widget has already loaded (it never loads one), and
clicks go first: before reading and before embedding it waits while a SAM
widget of the viewer runs or waits for a job.  Opening another folder cancels it.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import OperationCancelled, SAMError
from ...files.image_files import read_image
from ...files.image_series import labels_shape
from ..jobs.slice_embedding import embedding_key, set_slice_embedding
from ..layers.image_slices import ImageSlice, current_slice
from .prefetch import POLL, forget_background, start_in_background
from .task_runner import Relay, Task

logger = logging.getLogger("napari_sam_keras")

DESCRIPTION = "SAM: embedding the next image of the series in the background"

#: What the series wants prepared: the next image's file and the current image's slice
#: (for the slider position of a stack), or ``None`` (nothing to prepare).
Wanted = Callable[[], "tuple[Path, ImageSlice | None] | None"]


def file_key(path: Path) -> tuple[str, int, int]:
    """What identifies a file's content without reading it: path, size, modification time."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), int(stat.st_size), int(stat.st_mtime_ns)


def default_contrast_limits(data: np.ndarray, rgb: bool) -> tuple[float, float]:
    """The contrast limits napari gives a new Image layer of ``data`` (none passed)."""
    from napari.layers.utils.layer_utils import calc_data_range

    low, high = calc_data_range(data, rgb=rgb, dtype=data.dtype)
    return float(low), float(high)


class UpcomingLayer:
    """The Image layer an image of the series will get, before it exists.

    What the embeddings folder needs to find or make the image's store: the
    layer's name and data (:meth:`..session.layer_stores.LayerStores.store_for`).
    """

    multiscale = False

    def __init__(self, name: str, data: np.ndarray) -> None:
        self.name = name
        self.data = data
        self.unique_id = f"upcoming-{uuid.uuid4()}"


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """The next image as read, and the embedding of the slice its layer will show."""

    file: tuple[str, int, int]
    data: np.ndarray
    image_slice: ImageSlice
    model_key: str
    embedding: object


def _slice_to_embed(data: np.ndarray, name: str, like: ImageSlice | None) -> ImageSlice | None:
    """The slice of ``data`` its new layer will show first, or ``None`` if unknown."""
    spatial = labels_shape(data)
    rgb = len(spatial) < data.ndim
    if len(spatial) == 2:
        index: tuple = (None, None)
        axes = (0, 1)
    elif like is not None and tuple(like.spatial_shape) == spatial:
        index, axes = tuple(like.index), tuple(like.slice_axes)  # the slider stays where it is
    else:
        return None
    region = tuple(slice(None) if i is None else int(i) for i in index)
    return ImageSlice(
        layer=UpcomingLayer(name, data),
        data=np.asarray(data[region]),
        spatial_shape=spatial,
        slice_axes=axes,
        index=index,
        contrast_limits=default_contrast_limits(data, rgb),
    )


class NextImagePrefetcher:
    """Embeds the series' next image in the background (see the module).

    Args:
        viewer: the napari viewer (its SAM dock widgets' jobs go first).
        wanted: called on the GUI thread: the file to prepare and the current slice.
        session: the widgets' :class:`~..session.Session` (its embeddings, models, stores).
    """

    def __init__(self, viewer, wanted: Wanted, session) -> None:
        self.viewer = viewer
        self.wanted = wanted
        self.session = session
        self.cache = session.embeddings
        self.models = session.model_store()
        self.task: Task | None = None
        self.ready: PreparedImage | None = None
        self._task_file: tuple | None = None
        self._again = False
        self._widgets: list[weakref.ref] = []
        self._predictors: dict = {}
        self._relay = Relay(self.refresh)  # a model loaded in any thread -> GUI thread
        session.models.on_loaded(self._on_model_loaded)

    # --- what to prepare (GUI thread) ---------------------------------------------------

    def _on_model_loaded(self, _source: str) -> None:
        self._relay.changed.emit()

    def _sam_widgets(self) -> list:
        window = getattr(self.viewer, "window", None)
        docked = getattr(window, "dock_widgets", {}) if window is not None else {}
        try:
            widgets = list(docked.values())
        except RuntimeError:  # the window is closing
            return []
        return [w for w in widgets if hasattr(w, "runner") and hasattr(w, "model_picker")]

    def model_source(self) -> str | None:
        """A model the viewer's SAM widgets (else the last one loaded) show, if loaded."""
        sources = []
        for widget in self._sam_widgets():
            try:
                sources.append(widget.model_picker.source())
            except SAMError:
                continue
        sources.append(self.session.models.proposed_model())
        return next((s for s in sources if self.models.loaded(s) is not None), None)

    def refresh(self) -> None:
        """Prepare what the series wants next, unless it is ready or being prepared."""
        try:
            wanted = self.wanted()
        except (SAMError, OSError, RuntimeError) as error:
            logger.debug("no next-image prefetch: %s", error)
            wanted = None
        if wanted is None:
            return
        path, like = wanted
        source = self.model_source()
        if source is None:  # no model loaded: never load one just for this
            return
        try:
            key = file_key(path)
        except OSError:
            return
        network = self.models.loaded(source)
        if self.ready is not None and self.ready.file == key:
            if self.ready.model_key == network.key:
                return
        if self.task is not None:
            if self._task_file != key:
                self._again = True  # prepare the newer one after this has stopped
                self.task.cancel()
            return
        self._widgets = [weakref.ref(w) for w in self._sam_widgets()]
        self._start(Path(path), key, source, like)

    def _start(self, path: Path, key: tuple, source: str, like: ImageSlice | None) -> None:
        task = Task(
            self._job(path, key, source, like),
            DESCRIPTION,
            on_done=self._prepared,
            on_error=self._failed,
            on_finished=lambda: self._finished(task),
        )
        self.task, self._task_file = task, key
        start_in_background(task)

    def _prepared(self, prepared: PreparedImage | None) -> None:
        if prepared is not None:
            self.ready = prepared

    @staticmethod
    def _failed(error: BaseException) -> None:
        if not isinstance(error, OperationCancelled):
            logger.warning("embedding the next image of the series failed: %s", error)

    def _finished(self, task: Task) -> None:
        forget_background(task)
        if self.task is task:
            self.task, self._task_file = None, None
        if self._again:
            self._again = False
            self.refresh()

    def cancel(self) -> None:
        """Stop (after the step under way) and forget what was prepared (another folder)."""
        self._again = False
        self.ready = None
        if self.task is not None:
            self.task.cancel()

    @property
    def busy(self) -> bool:
        return self.task is not None

    # --- using it (GUI thread) ----------------------------------------------------------

    def take_image(self, path: Path) -> np.ndarray | None:
        """The image read in the background if it is ``path`` and the file is unchanged."""
        ready = self.ready
        if ready is None:
            return None
        try:
            unchanged = file_key(path) == ready.file
        except OSError:
            unchanged = False
        return ready.data if unchanged else None

    def adopt(self, layer, dims) -> bool:
        """Put the prepared embedding into the cache under ``layer``'s shown slice; True if so.

        Only when the layer holds the prepared array and shows the prepared slice with
        the prepared contrast limits (anything else is left to be computed as usual).
        """
        ready = self.ready
        if ready is None or layer.data is not ready.data:
            return False  # another image (Previous): what is prepared stays
        self.ready = None
        try:
            shown = current_slice(layer, dims)
        except SAMError:  # a 3D view, ...: nothing to adopt
            return False
        prepared = ready.image_slice
        if (
            shown.index != prepared.index
            or shown.slice_axes != prepared.slice_axes
            or shown.level != 0
            or shown.contrast_limits != prepared.contrast_limits
            or not np.array_equal(shown.data, prepared.data)
        ):
            logger.debug("the prepared embedding is not the shown slice's; not used")
            return False
        self.cache.put(embedding_key(shown, ready.model_key), ready.embedding)
        return True

    # --- the work (its own thread) ------------------------------------------------------

    def _clicks_pending(self) -> bool:
        for ref in self._widgets:
            widget = ref()
            if widget is None:
                continue
            preview = getattr(widget, "live_preview", None)
            if not widget.runner.idle or (preview is not None and preview.pending):
                return True
        return False

    def _wait_for_clicks(self, progress) -> None:
        while self._clicks_pending():
            if progress.cancelled:
                raise OperationCancelled("next-image prefetch stopped")
            time.sleep(POLL)
        if progress.cancelled:
            raise OperationCancelled("next-image prefetch stopped")

    def _job(self, path: Path, key: tuple, source: str, like: ImageSlice | None) -> Callable:
        def job(progress) -> PreparedImage | None:
            from ... import TiledSAMPredictor

            progress(0, 2)
            self._wait_for_clicks(progress)
            progress.step(f"reading {path.name}")
            data = read_image(path)
            image_slice = _slice_to_embed(data, path.name, like)
            network = self.models.loaded(source)
            if image_slice is None or network is None:
                return None
            progress(1, 2)
            predictor = self._predictors.get(network.key)
            if predictor is None:
                predictor = TiledSAMPredictor(network, warm_up=False)
                self._predictors = {network.key: predictor}
            self._wait_for_clicks(progress)  # a click's job always goes first
            progress.step(f"embedding {path.name}")
            set_slice_embedding(predictor, image_slice, self.session, memory=False)
            progress(2, 2)
            return PreparedImage(key, data, image_slice, network.key, predictor.embedding_state())

        return job
