"""What both dock widgets are made of: the viewer, a model picker, a status line, a task runner.

The ``labels`` name: the widgets expose their target Labels layer picker as
``widget.labels`` (scripts write ``widget.labels.value = layer``), but
magicgui's ``Container`` already has a ``labels`` attribute, the flag that
shows the names next to the controls.  :class:`SAMWidget` keeps both: reading
``labels`` gives the picker, setting a bool sets the flag.
"""

from __future__ import annotations

from magicgui.widgets import Container, PushButton
from qtpy.QtCore import QTimer

from ..background.safe_import import background_import_message, start_background_import
from ..background.task_runner import TaskRunner
from ..session import current_session
from .folder_picker import EmbeddingsFolderPicker
from .model_picker import ModelPicker
from .notifications import report_error, report_warning
from .sections import NestedControls, find_widget
from .status_line import StatusLine


def row(*widgets) -> Container:
    """Widgets side by side, without labels or margins."""
    box = Container(layout="horizontal", labels=False, widgets=list(widgets))
    box.margins = (0, 0, 0, 0)
    return box


def unwrap_viewer(viewer):
    """The real viewer behind napari's ``PublicOnlyProxy`` (plugins get a proxy)."""
    return getattr(viewer, "__wrapped__", viewer)


def resolve_viewer(viewer):
    """``viewer`` unwrapped, or the current napari viewer when ``None``."""
    if viewer is None:
        import napari

        viewer = napari.current_viewer()
        if viewer is None:
            raise RuntimeError("No napari viewer: pass one, or create napari.Viewer() first.")
    return unwrap_viewer(viewer)


class SAMWidget(NestedControls, Container):
    """Base of the dock widgets: ``viewer``, ``session``, ``model_picker``, ``status``, ``runner``.

    Subclasses lay out their controls with :func:`.sections.lay_out` (sections in a scroll
    area, the status line in the footer) and put ``self.model_picker``,
    ``self.embeddings_picker``, ``self.cancel_button`` and ``self.status`` where they want
    them; every control stays reachable as ``widget.<name>``.
    """

    def __init__(self, napari_viewer=None) -> None:
        super().__init__(labels=False)
        self.viewer = resolve_viewer(napari_viewer)
        #: What the widgets share: models, embeddings, the embeddings folder.
        self.session = current_session()
        self.model_store = self.session.model_store()
        self.embedding_cache = self.session.embeddings
        self.model_picker = ModelPicker(self.session)
        self.embeddings_picker = EmbeddingsFolderPicker(self.session.stores)
        self.status = StatusLine()
        self.cancel_button = PushButton(
            name="cancel_button",
            text="Cancel",
            enabled=False,
            tooltip="Stop the running job; nothing of it is written.",
        )
        self.cancel_button.changed.connect(self.cancel)
        self.runner = TaskRunner(self.status, on_busy=self._on_busy)
        importing = start_background_import()  # Keras and jax/torch, off the Qt thread
        if self.model_picker.note:  # the demo model proposed offline: say what it is
            note = self.model_picker.note
            self._demo_note = note.split(": ")[0] + "."
            self.status.show(self._demo_note, details=note)
            self.model_picker.field.changed.connect(self._drop_demo_note)
        elif importing:
            self.status.show(background_import_message())
        if importing:
            self._import_timer = QTimer()
            self._import_timer.setInterval(250)
            self._import_timer.timeout.connect(self._watch_background_import)
            self._import_timer.start()

    def _drop_demo_note(self, _value=None) -> None:
        """Clear the note on the proposed demo model once the user names another model."""
        if self.status.value == self._demo_note:
            self.status.show("")

    def _watch_background_import(self) -> None:
        """Clear the status line's import message once the import is done."""
        if background_import_message():
            return
        self._import_timer.stop()
        if self.alive() and self.status.value.startswith("importing Keras"):
            self.status.show("Keras ready")

    # --- the ``labels`` name (see the module docstring) -----------------------------------

    @property
    def labels(self):
        """The ``labels`` (target Labels layer) picker."""
        if self.__dict__.get("_inserting"):  # magicgui asks for the flag (see _insert_widget)
            return self._labels
        found = find_widget(self, "labels") if "_list" in self.__dict__ else None
        return found if found is not None else self._labels

    @labels.setter
    def labels(self, value: bool) -> None:
        Container.labels.fset(self, value)

    def _insert_widget(self, index: int, widget) -> None:
        # magicgui reads ``self.labels`` to decide whether a control gets a name column: there
        # it must be the flag, not the picker
        self.__dict__["_inserting"] = True
        try:
            super()._insert_widget(index, widget)
        finally:
            self.__dict__["_inserting"] = False

    # --- shared parts -----------------------------------------------------------------

    @property
    def model(self):
        """The model text field (a preset name, file or folder)."""
        return self.model_picker.field

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.runner.busy

    def alive(self) -> bool:
        """False once Qt has deleted the widget (a deferred call may still arrive)."""
        try:
            self.status.native.objectName()
        except RuntimeError:
            return False
        return True

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.enabled = busy
        if not busy:  # after the job's result is written (the next turn of the event loop)
            QTimer.singleShot(0, self.show_store_notices)

    def show_store_notices(self) -> None:
        """Say what happened with the embeddings folder (a store for other data, ...)."""
        if not self.alive():
            return
        notices = self.session.stores.take_notices()
        for text in notices:
            report_warning(text)
        if notices and not self.status.error_shown:
            done = self.status.value
            self.status.show(" ".join([done + "." if done else "", *notices]).strip())

    @property
    def embeddings_folder(self):
        """The embeddings folder field (empty: off; shared by both widgets)."""
        return self.embeddings_picker.field

    def user_error(self, error: BaseException | str) -> None:
        """A problem the user can fix: a notification, and the status line until the next action."""
        message = report_error(error)
        self.status.show_error(message)

    def cancel(self, _value=None) -> None:
        """Stop the running job (its result is not written) and drop what was queued."""
        self.runner.cancel()

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until no job runs or waits (GUI events keep flowing); True if so."""
        return self.runner.wait(timeout)

    def follow_active_image(self, picker) -> None:
        """Keep ``picker`` (an image drop-down) on the active image layer: now and on change."""
        from napari.layers import Image

        def follow(_event=None) -> None:
            active = self.viewer.layers.selection.active
            if isinstance(active, Image) and self.alive() and active is not picker.value:
                self.reset_choices()
                picker.value = active

        self.viewer.layers.selection.events.active.connect(follow)
        follow()

    def remember_model(self, source: str) -> None:
        """Note a model that loaded (the picker's recent list, kept across sessions)."""
        if source in self.model_store:
            self.model_picker.remember(source)
