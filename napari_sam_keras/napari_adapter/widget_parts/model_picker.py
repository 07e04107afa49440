"""The widgets' model picker: a preset name typed in, a file or a folder chosen, or a recent one.

The choice is remembered across napari sessions (:mod:`..session.settings`), and so is the
"int8 encoder" option (the image encoder quantized to int8, see "int8 encoders" in the
documentation).  A ``*.weights.h5`` picked inside a Keras preset folder means that folder.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, PushButton
from qtpy.QtWidgets import QComboBox

from ...errors import ModelLoadError
from ...model.config import PRESETS
from ...model.model_source import resolve_model
from ..session import current_session
from ..session.loaded_models import source_text, split_quantization, with_quantization
from ..session.settings import (
    encoder_quantization,
    recent_models,
    remember_model,
    set_encoder_quantization,
)

MODEL_FILTER = "SAM models (*.pth *.pt *.keras *.weights.h5);;All files (*)"
_PLACEHOLDER = "recent and preset models\u2026"


def offer_model(source: str, session=None) -> None:
    """Put ``source`` first among the recent models, in every open picker and the settings.

    The open pickers are the ``session``'s (default: :func:`~.session.current_session`), so
    that a model made in one widget (fine-tuning) is listed in all.
    """
    session = session if session is not None else current_session()
    remember_model(source)
    for picker in session.model_pickers():
        try:
            picker.refresh()
        except RuntimeError:  # its Qt widget was deleted
            session.forget_picker(picker)


def model_source(value) -> str:
    """The model field's text as a ``load_model`` source, in words a GUI user can act on.

    A file is read as :func:`~napari_sam_keras.model.model_source.resolve_model` reads it
    (a ``*.weights.h5`` inside a Keras preset folder means the folder); other text is kept
    as typed (a preset name, or a name registered with ``ModelStore.add``) and resolved
    when the model is loaded.  Raises :class:`ModelLoadError` for a weights-only file
    outside a preset folder.
    """
    text = source_text(value)
    path = Path(text).expanduser()
    if not (path.is_file() and path.name.endswith(".weights.h5")):
        return text
    try:
        resolved = resolve_model(path)
    except ModelLoadError as error:
        raise ModelLoadError(
            f"{path.name} holds weights only, without the model's architecture. Choose the "
            "folder it belongs to (a Keras preset folder with config.json) with 'Folder\u2026', "
            "or a .keras or official .pth file."
        ) from error
    return str(resolved.path) if resolved.kind == "preset_dir" else text


class ModelPicker(Container):
    """``model`` (a wide text field) over a row: recent/preset models, File\u2026, Folder\u2026."""

    def __init__(self, session) -> None:
        #: Why the proposed model is the demo model (no SAM weights here), else "".
        self.note = session.models.proposed_model_note()
        tooltip = (
            "A preset name (sam_base_sa1b, sam_large_sa1b, sam_huge_sa1b), an official "
            ".pth checkpoint, a .keras file or a Keras preset folder."
        )
        self.field = LineEdit(
            name="model",
            value=session.models.proposed_model(),
            tooltip=f"{tooltip}\n\n{self.note}" if self.note else tooltip,
        )
        # a callable: a container's reset_choices() (napari calls it on layer changes) reads
        # the settings again instead of restoring the list the picker was made with
        self.recent = ComboBox(
            name="recent",
            choices=lambda _widget: self._choices(),
            value=_PLACEHOLDER,
            tooltip="Models used before, and the keras-cv presets.",
        )
        self.file_button = PushButton(
            name="file_button",
            text="File\u2026",
            tooltip="Choose a checkpoint file (.pth, .keras, ...).",
        )
        self.folder_button = PushButton(
            name="folder_button",
            text="Folder\u2026",
            tooltip="Choose a model folder (a saved or fine-tuned model, a preset folder).",
        )
        row = Container(
            layout="horizontal",
            labels=False,
            widgets=[self.recent, self.file_button, self.folder_button],
        )
        row.margins = (0, 0, 0, 0)
        self.int8 = CheckBox(
            name="int8",
            text="int8 encoder",
            value=encoder_quantization() == "int8",
            tooltip="Quantize the image encoder's weights to int8 (Keras' own quantization): "
            "faster embeddings on CPUs with int8 units, masks checked against float32 when "
            "the model loads (refused below 0.98 mean IoU). See 'int8 encoders' in the "
            "documentation.",
        )
        super().__init__(
            name="model_picker",
            label="model",
            labels=False,
            widgets=[self.field, row, self.int8],
        )
        self.margins = (0, 0, 0, 0)
        self.field.native.setMinimumWidth(200)
        self.recent.native.setMinimumContentsLength(12)
        # as wide as 12 characters, not as the longest path it lists (it covered the buttons)
        self.recent.native.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.recent.changed.connect(self._on_recent)
        self.file_button.changed.connect(self.choose_file)
        self.folder_button.changed.connect(self.choose_folder)
        self.int8.changed.connect(self._on_int8)
        self._on_chosen: list = []
        self.field.native.editingFinished.connect(self._chosen)
        session.add_picker(self)

    def on_chosen(self, callback) -> None:
        """Call ``callback()`` when a model was chosen (typed and confirmed, or picked)."""
        self._on_chosen.append(callback)

    def _chosen(self) -> None:
        for callback in self._on_chosen:
            callback()

    @staticmethod
    def _choices() -> list[str]:
        recent = recent_models()
        return [_PLACEHOLDER, *recent, *(p for p in PRESETS if p not in recent)]

    def _on_int8(self, value) -> None:
        set_encoder_quantization("int8" if value else None)
        self._chosen()  # another network: the widgets react as to a new model

    def offer_quantization(self, offered: bool) -> None:
        """Show the "int8 encoder" option (``False``: hidden and off, e.g. for fine-tuning)."""
        self.int8.visible = offered
        self._quantize_offered = offered

    def quantization(self) -> str | None:
        """``"int8"`` when the image encoder is to be quantized, else ``None``."""
        offered = getattr(self, "_quantize_offered", True)
        return "int8" if offered and self.int8.value else None

    def source(self) -> str:
        """The chosen model as the widgets' model key: a ``load_model`` source (see
        :func:`model_source`), ending in `` +int8`` for the int8 encoder."""
        return with_quantization(model_source(self.field.value), self.quantization())

    def set_source(self, source: str) -> None:
        """Show ``source`` in the field (a chosen file, folder or name)."""
        self.field.value = str(source)
        self._chosen()

    def remember(self, source: str) -> None:
        """Put ``source`` first among the recent models (after it was loaded)."""
        remember_model(split_quantization(source)[0])
        self.refresh()

    def refresh(self) -> None:
        """List the recent models again (another widget may have added one)."""
        self.recent.changed.disconnect(self._on_recent)
        try:
            self.recent.reset_choices()
            self.recent.value = _PLACEHOLDER
        finally:
            self.recent.changed.connect(self._on_recent)

    def _on_recent(self, value) -> None:
        if value and value != _PLACEHOLDER:
            self.set_source(value)
            self.recent.value = _PLACEHOLDER

    def _start_folder(self) -> str:
        path = Path(str(self.field.value)).expanduser()
        return str(path.parent if path.is_file() else path if path.is_dir() else Path.home())

    def choose_file(self, _value=None) -> None:
        """Ask for a checkpoint file (a dialog)."""
        from qtpy.QtWidgets import QFileDialog

        name, _ = QFileDialog.getOpenFileName(
            self.native, "Choose a SAM model file", self._start_folder(), MODEL_FILTER
        )
        if name:
            try:
                name = model_source(name)
            except ModelLoadError:
                pass  # shown when the model is used
            self.set_source(name)

    def choose_folder(self, _value=None) -> None:
        """Ask for a Keras preset folder (a dialog)."""
        from qtpy.QtWidgets import QFileDialog

        name = QFileDialog.getExistingDirectory(
            self.native, "Choose a Keras preset folder", self._start_folder()
        )
        if name:
            self.set_source(name)
