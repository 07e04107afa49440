"""The "embeddings folder" control: one setting shared by both widgets and remembered.

Empty means off (embeddings are kept in memory only).  A folder typed in (and
confirmed) or chosen with **Folder…** is used by both widgets at once, and
stored in the widgets' settings (:mod:`.session.settings`) for the next napari session.
The folder is the session's (:class:`~..session.layer_stores.LayerStores`).
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, LineEdit, PushButton

TOOLTIP = (
    "A folder for the image embeddings (one store per image layer): embeddings computed once "
    "are read from there, also in later napari sessions. Empty: memory only."
)


class EmbeddingsFolderPicker(Container):
    """``embeddings_folder`` (a text field, empty = off) and a **Folder…** button."""

    def __init__(self, stores) -> None:
        self.stores = stores
        self.field = LineEdit(
            name="embeddings_folder", value=stores.current_folder() or "", tooltip=TOOLTIP
        )
        self.button = PushButton(
            name="folder_button", text="Folder\u2026", tooltip="Choose the embeddings folder."
        )
        super().__init__(
            name="embeddings_picker",
            label="embeddings folder",
            layout="horizontal",
            labels=False,
            widgets=[self.field, self.button],
        )
        self.margins = (0, 0, 0, 0)
        self.field.native.editingFinished.connect(self._typed)
        self.field.changed.connect(self._set_from_script)
        self.button.changed.connect(self.choose_folder)
        stores.on_folder_changed(self._on_folder_changed)

    def _set_from_script(self, value: str) -> None:
        # Typing waits for Enter or leaving the field (no store for a half-typed path); a
        # value set from a script (``widget.embeddings_folder.value = ...``) is used at once.
        if not self.field.native.hasFocus() and (value or None) != self.stores.current_folder():
            self.set_folder(value)

    def _typed(self) -> None:
        self.set_folder(self.field.value)

    def set_folder(self, folder: str | None) -> None:
        """Use ``folder`` (``None``/empty: off) in both widgets, and remember it."""
        folder = str(folder).strip() if folder else ""
        self.stores.set_folder(str(Path(folder).expanduser()) if folder else None)

    def _on_folder_changed(self, folder: str | None) -> None:
        try:
            if self.field.value != (folder or ""):
                self.field.value = folder or ""
        except RuntimeError:  # the widget was closed
            pass

    def choose_folder(self, _value=None) -> None:
        """Ask for the folder (a dialog)."""
        from qtpy.QtWidgets import QFileDialog

        start = self.stores.current_folder() or str(Path.home())
        name = QFileDialog.getExistingDirectory(self.native, "Folder for the embeddings", start)
        if name:
            self.set_folder(name)
