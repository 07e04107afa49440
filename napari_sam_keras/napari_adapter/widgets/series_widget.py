"""The "Image series" dock widget: annotate a folder of images one after the other.

Choose a folder; its images open one at a time with their saved labels (or empty ones).
**Save and next** (PageDown) saves the labels atomically, marks the image done and opens
the next one; **Previous** (PageUp) saves and goes back.  The position and the done images
are remembered in the folder (``sam-labels/series.json``), so reopening the folder in a
new napari session continues where the user stopped; the folder itself is remembered
(``session/settings.py``).  Labels edited since the last save are saved (atomically) when another
folder is opened, when the labels layer is removed and when the widget or the viewer closes;
a warning says so when they cannot be.  The interactive and automatic
widgets work on the current image: the series' Labels layer stays the same layer (its data
is replaced), and each image gets a new Image layer (so no embedding of another image is
ever reused for it).  While the user works on an image, the next one is read and embedded
in the background with a model some widget has loaded (:mod:`..background.series_prefetch`), so that
its first click after **Save and next** computes no embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container

from ...files.image_series import ImageSeries, labels_shape
from ..background.series_prefetch import NextImagePrefetcher
from ..layers.image_slices import current_slice
from ..session import current_session, settings
from ..widget_parts.notifications import USER_ERRORS, report_error, report_info, report_warning
from ..widget_parts.sections import NestedControls, lay_out
from ..widget_parts.widget_base import resolve_viewer
from .series_controls import NEXT_KEY, PREVIOUS_KEY, SeriesControls, series_controls

if TYPE_CHECKING:  # pragma: no cover
    import napari


class ImageSeriesWidget(NestedControls, Container):
    """Step through the images of a folder, saving each one's labels (dock widget).

    Value widgets: ``folder``, ``skip_done``, ``done``.  Buttons: ``open_button``,
    ``previous_button``, ``next_button``, ``save_button``.  Keys: PageDown (save and next),
    PageUp (previous).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer | None = None) -> None:
        super().__init__(labels=False)
        self.viewer = resolve_viewer(napari_viewer)
        self.session = current_session()
        self.series: ImageSeries | None = None
        self.image_layer = None
        self.labels_layer = None
        self.prefetch = NextImagePrefetcher(self.viewer, self._next_wanted, self.session)

        #: Every control, a typed attribute (also reachable as ``widget.<name>``).
        self.controls: SeriesControls = series_controls()
        c = self.controls
        lay_out(self, c.sections(), c.footer())
        c.open_button.changed.connect(lambda: self._guarded(self.open, c.folder.value))
        self.controls.previous_button.changed.connect(lambda: self._guarded(self.previous))
        self.controls.next_button.changed.connect(lambda: self._guarded(self.next))
        self.controls.save_button.changed.connect(lambda: self._guarded(self.save))
        self.controls.done.changed.connect(self._on_done_toggled)
        self.controls.skip_done.changed.connect(lambda _value: self.prefetch.refresh())
        remembered = settings.series_folder()
        if remembered:
            self.controls.folder.value = remembered
        self._saved_labels: np.ndarray | None = None  # what the file holds, to spot edits
        self.viewer.layers.events.removing.connect(self._on_layer_removing)
        self.native.destroyed.connect(lambda *_: self.autosave())
        self.viewer.bind_key(NEXT_KEY, lambda _viewer: self._guarded(self.next), overwrite=True)
        self.viewer.bind_key(
            PREVIOUS_KEY, lambda _viewer: self._guarded(self.previous), overwrite=True
        )
        self._update_controls()

    # --- actions ---------------------------------------------------------------------------

    def open(self, folder: str | Path) -> None:
        """Open a folder of images at the image where the series was left."""
        self.prefetch.cancel()  # the other folder's next image is of no use
        series = ImageSeries(folder)
        self.autosave()  # the labels of the folder open so far are never dropped
        self.series = series
        self.controls.folder.value = str(folder)
        settings.set_series_folder(str(Path(folder).resolve()))
        self._show()

    @property
    def unsaved(self) -> bool:
        """Whether the labels were edited since they were opened or last saved."""
        layer = self.labels_layer
        if self.series is None or layer is None or self._saved_labels is None:
            return False
        data = np.asarray(layer.data)
        saved = self._saved_labels
        return data.shape != saved.shape or not np.array_equal(data, saved)

    def autosave(self) -> Path | None:
        """Save edited labels now (atomically); a warning when they cannot be saved.

        Called when the folder changes, when the labels layer is removed, when the widget
        or the viewer closes: labels drawn after the last **Save and next** survive.
        """
        if not self.unsaved:
            return None
        try:
            path = self.series.save_labels(np.asarray(self.labels_layer.data))
        except (OSError, *USER_ERRORS) as exc:
            report_warning(
                f"SAM: the labels of {self.series.current.name} could NOT be saved ({exc}); "
                "keep napari open and save them with File > Save Selected Layers."
            )
            return None
        self._saved_labels = np.array(self.labels_layer.data, copy=True)
        return path

    def _on_layer_removing(self, event) -> None:
        try:
            layer = self.viewer.layers[event.index]
        except (AttributeError, IndexError, TypeError):
            return
        if layer is self.labels_layer:
            self.autosave()

    def next(self) -> bool:
        """Save the labels, mark the image done and open the next one; False at the end."""
        series = self._require_series()
        self._save(done=True)
        index = series.neighbour(+1, skip_done=self.controls.skip_done.value)
        if index is None:
            report_info("SAM: this is the last image of the series; its labels are saved.")
            self._update_controls()
            return False
        series.go_to(index)
        self._show()
        return True

    def previous(self) -> bool:
        """Save the labels and open the previous image; False at the start."""
        series = self._require_series()
        self._save(done=None)
        index = series.neighbour(-1, skip_done=self.controls.skip_done.value)
        if index is None:
            report_info("SAM: this is the first image of the series; its labels are saved.")
            return False
        series.go_to(index)
        self._show()
        return True

    def save(self) -> Path:
        """Save the current labels (atomically) without moving."""
        self._require_series()
        return self._save(done=None)

    # --- helpers ---------------------------------------------------------------------------

    def _require_series(self) -> ImageSeries:
        if self.series is None:
            from ...errors import SAMError

            raise SAMError("Open a folder of images first.")
        return self.series

    def _guarded(self, action, *args):
        try:
            return action(*args)
        except USER_ERRORS as exc:
            report_error(exc)
        except OSError as exc:
            report_error(f"SAM: cannot read or write a file: {exc}")
        return None

    def _save(self, done: bool | None) -> Path:
        series = self.series
        if self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            from ...errors import SAMError

            raise SAMError("The series' Labels layer was deleted; reopen the folder.")
        path = series.save_labels(np.asarray(self.labels_layer.data))
        self._saved_labels = np.array(self.labels_layer.data, copy=True)
        if done is not None:
            series.set_done(done)
        series.save_state()
        return path

    def _show(self) -> None:
        """Open the series' current image and its labels in the viewer."""
        series = self.series
        image = self.prefetch.take_image(series.current)  # read in the background
        if image is None:
            image = series.read_image()
        saved = series.read_labels()
        shape = labels_shape(image)
        labels = np.zeros(shape, np.int32) if saved is None else saved.astype(np.int32)
        if labels.shape != shape:
            from ...errors import SAMError

            raise SAMError(
                f"the saved labels {series.label_path()} have shape {labels.shape}, the image "
                f"{shape}"
            )
        name = series.current.name
        old = self.image_layer
        if old is not None and old in self.viewer.layers:
            self.viewer.layers.remove(old)
        # a new Image layer per image: embeddings are cached per layer and data
        self.image_layer = self.viewer.add_image(image, name=name, rgb=len(shape) < image.ndim)
        self.viewer.layers.move(self.viewer.layers.index(self.image_layer), 0)
        if self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            self.labels_layer = self.viewer.add_labels(labels, name=f"{Path(name).stem} labels")
        else:
            self.labels_layer.data = labels
            self.labels_layer.name = f"{Path(name).stem} labels"
        self._saved_labels = np.array(labels, copy=True)
        self.viewer.reset_view()
        self.prefetch.adopt(self.image_layer, self.viewer.dims)
        self._update_controls()
        self.prefetch.refresh()  # the next image, in the background

    def _next_wanted(self):
        """The next image's file and the current slice (for the prefetch), or ``None``."""
        series = self.series
        if series is None or self.image_layer not in self.viewer.layers:
            return None
        index = series.neighbour(+1, skip_done=self.controls.skip_done.value)
        if index is None:
            return None
        try:
            shown = current_slice(self.image_layer, self.viewer.dims)
        except USER_ERRORS:  # a 3D view: a 2D next image can still be prepared
            shown = None
        return series.images[index], shown

    def _update_controls(self) -> None:
        series = self.series
        opened = series is not None
        for button in (
            self.controls.previous_button,
            self.controls.next_button,
            self.controls.save_button,
            self.controls.done,
        ):
            button.enabled = opened
        if not opened:
            return
        done = series.is_done()
        self.controls.status.value = (
            f"{series.index + 1}/{len(series.images)}: {series.current.name}"
            f"{' (done)' if done else ''} - {len(series.done)} done"
        )
        with self.controls.done.changed.blocked():
            self.controls.done.value = done

    def _on_done_toggled(self, value: bool) -> None:
        if self.series is None:
            return
        self.series.set_done(bool(value))
        self._guarded(self.series.save_state)
        self._update_controls()
