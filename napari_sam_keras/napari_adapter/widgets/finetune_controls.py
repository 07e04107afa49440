"""The Fine-tune widget's controls: training data, mode, epochs, where the model goes, results.

Only widgets and their small rules (the default output folder, the results table); the
widget (:mod:`.finetune_widget`) connects them and runs the job.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt

from ...processing.training_figures import format_rows
from ..widget_parts.sections import Section
from ..widget_parts.status_line import wrap_text
from ..widget_parts.widget_base import row

LAYERS = "annotated layers in the viewer"
SERIES = "image-series folder"
MODES = ("decoder", "lora", "full")
MODE_TIP = (
    "decoder: the image encoder is frozen and each image embedded once; only the prompt "
    "encoder, mask decoder and instance decoder learn (fast, also without a GPU). lora: small "
    "adapters in the encoder learn too. full: every weight (slow without a GPU)."
)


def models_folder() -> Path:
    """Where fine-tuned models go by default: ``<user data folder>/napari-sam-keras/models``."""
    from platformdirs import user_data_path

    return user_data_path("napari-sam-keras") / "models"


def default_output(base_model: str) -> Path:
    """A new folder for a model fine-tuned from ``base_model`` (named with the date and time)."""
    stem = Path(str(base_model).rstrip("/\\")).name or "sam"
    for ending in (".weights.h5", ".keras", ".pth", ".pt"):
        stem = stem.removesuffix(ending)
    return models_folder() / f"{stem}-finetuned-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class FineTuneControls:
    """Every control of the Fine-tune widget, one typed attribute each.

    A field's name is its control's magicgui name (``widget.<name>`` finds it too).
    Adding a control: a field here, its construction in :func:`finetune_controls`, its
    place in :meth:`sections`.
    """

    source: ComboBox
    series_folder: LineEdit
    series_button: PushButton
    data_summary: Label
    mode: ComboBox
    epochs: SpinBox
    augment: CheckBox
    validation: FloatSpinBox
    output: LineEdit
    output_button: PushButton
    run_button: PushButton
    results: Label
    series_row: Container | None = None  # series_folder + series_button
    output_row: Container | None = None  # output + output_button

    def sections(self, model_picker, plot) -> list[Section]:
        """The dock's folding sections, top to bottom (``plot``: the training curve)."""
        return [
            Section("Training data", [self.source, self.series_row, self.data_summary]),
            Section(
                "Model and training",
                [
                    model_picker,
                    self.mode,
                    self.epochs,
                    self.augment,
                    self.validation,
                    self.output_row,
                ],
                name="finetune_training",
            ),
            Section("Training curve and results", [plot, self.results], name="finetune_plot"),
        ]

    def footer(self, cancel_button, status) -> list:
        """What stays visible under the sections: the buttons and the status line."""
        return [row(self.run_button, cancel_button), row(status)]


def finetune_controls() -> FineTuneControls:
    c = FineTuneControls(
        source=ComboBox(
            name="source",
            label="training data",
            choices=[LAYERS, SERIES],
            value=LAYERS,
            tooltip="The image layers with their Labels layers (what you annotated), or a "
            "folder annotated with the Image series widget (its saved labels).",
        ),
        series_folder=LineEdit(name="series_folder", value="", tooltip="The image-series folder."),
        series_button=PushButton(name="series_button", text="Folder\u2026"),
        data_summary=Label(name="data_summary", label="", value=""),
        mode=ComboBox(name="mode", choices=list(MODES), value="decoder", tooltip=MODE_TIP),
        epochs=SpinBox(
            name="epochs",
            value=10,
            min=1,
            max=1000,
            tooltip="Passes over the training images; the plot shows each one.",
        ),
        augment=CheckBox(
            name="augment",
            value=True,
            text="turned and mirrored too",
            tooltip="Also train on each image turned by 90 degrees and mirrored: more to learn "
            "from, but 4 times the steps and the image embeddings. Off: the quick choice for "
            "a large model (ViT-B) on a CPU.",
        ),
        validation=FloatSpinBox(
            name="validation",
            value=0.2,
            min=0.0,
            max=0.9,
            step=0.05,
            label="held out",
            tooltip="Fraction of the images kept out of training to measure the gain.",
        ),
        output=LineEdit(
            name="output",
            value="",
            tooltip="The folder the new model is saved to (must not exist); empty: a new "
            "folder under your user data folder.",
        ),
        output_button=PushButton(name="output_button", text="Folder\u2026"),
        run_button=PushButton(name="run_button", text="Fine-tune"),
        results=Label(name="results", label="", value=""),
    )
    c.series_row = row(c.series_folder, c.series_button)
    c.series_row.label = "series folder"
    c.output_row = row(c.output, c.output_button)
    c.output_row.label = "save to"
    wrap_text(c.data_summary)
    c.results.native.setTextFormat(Qt.TextFormat.RichText)
    return c


def results_html(rows) -> str:
    """The before/after table (``(name, before, after, gain)`` rows) as rich text."""
    text = format_rows(["", "before", "after", "gain"], rows)
    return f"<pre style='font-size: 9pt'>{html.escape(text)}</pre>"
