"""Fine-tune SAM on what you annotated, without leaving napari (Plugins > SAM Keras > Fine-tune).

Training data: the image layers that have a Labels layer (what the Interactive or
Automatic segmentation widget wrote, or what you painted; see :mod:`..layers.finetune_data`), or a
folder annotated with the Image series widget.  The base model comes from the same model
picker as the segmentation widgets.  **Fine-tune** runs in a worker thread (progress in
the status line and napari's progress bar, **Cancel** stops it and writes nothing); a
live plot shows the training loss and the held-out IoU after every epoch, and a table the
base model's and the new model's figures at the end.  The new model is saved to the chosen
folder (default: under the user data folder), added to the recent models of every
open widget's model picker, and kept loaded, so choosing it segments at once.
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..background.safe_import import ml_stack_ready
from ..background.task_runner import Relay
from ..jobs.finetune_job import FineTuneJob, FineTuneOutcome
from ..layers.finetune_data import TrainingData, annotated_layers, layer_training_data
from ..layers.layer_pickers import is_sam_preview
from ..widget_parts.model_picker import offer_model
from ..widget_parts.notifications import USER_ERRORS
from ..widget_parts.sections import lay_out
from ..widget_parts.widget_base import SAMWidget
from .finetune_controls import (
    LAYERS,
    SERIES,
    FineTuneControls,
    default_output,
    finetune_controls,
    results_html,
)
from .training_plot import TrainingPlot

if TYPE_CHECKING:
    import napari


class FineTuneWidget(SAMWidget):
    """Fine-tune the chosen model on the viewer's annotations or an image-series folder.

    Value widgets: ``source``, ``series_folder``, ``model``, ``mode``, ``epochs``, ``augment``,
    ``validation``, ``output``.  Buttons: ``run_button``, ``cancel_button``.
    Parts: ``plot`` (:class:`~.training_plot.TrainingPlot`), ``results`` (the table),
    ``outcome`` (the last finished run's :class:`~..jobs.finetune_job.FineTuneOutcome`).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer | None = None) -> None:
        super().__init__(napari_viewer)
        self.model_picker.offer_quantization(False)  # training needs float32 kernels
        #: Every control, a typed attribute (also reachable as ``widget.<name>``).
        self.controls: FineTuneControls = finetune_controls()
        c = self.controls
        self.plot = TrainingPlot(self.viewer)
        self.outcome: FineTuneOutcome | None = None
        #: More ``finetune`` settings for scripts (``objects_per_image``, ``prompt_iterations``,
        #: ``learning_rate``, ``instance_decoder``, ``seed``); the controls set the rest.
        self.training_options: dict = {}
        lay_out(
            self,
            c.sections(self.model_picker, self.plot),
            c.footer(self.cancel_button, self.status),
        )
        self._history = None
        self._history_lock = threading.Lock()
        self._plot_relay = Relay(self._show_history)  # epochs reported from the worker
        c.source.changed.connect(self._on_source_changed)
        c.series_folder.changed.connect(self.update_summary)
        c.series_button.changed.connect(self.choose_series_folder)
        c.output_button.changed.connect(self.choose_output)
        c.run_button.changed.connect(self._on_run_clicked)
        self.viewer.layers.events.inserted.connect(self.update_summary)
        self.viewer.layers.events.removed.connect(self.update_summary)
        self._on_source_changed()

    # --- training data ----------------------------------------------------------------

    def _not_training_labels(self) -> tuple:
        return tuple(layer for layer in self.viewer.layers if is_sam_preview(layer))

    def _on_source_changed(self, _value=None) -> None:
        self.controls.series_row.visible = self.controls.source.value == SERIES
        self.update_summary()

    def update_summary(self, _event=None) -> None:
        """Say which annotated images a run would use (cheap: names only)."""
        if not self.alive():
            return
        c = self.controls
        if c.source.value == LAYERS:
            pairs = annotated_layers(self.viewer, self._not_training_labels())
            text = (
                "images with labels: " + ", ".join(f"{i.name} ({lab.name})" for i, lab in pairs)
                if pairs
                else "no image layer has a Labels layer yet: annotate some objects first"
            )
        else:
            text = series_summary(c.series_folder.value)
        c.data_summary.value = text

    def training_data(self) -> TrainingData | None:
        """The layers' annotated planes (read now, on the Qt thread), or ``None`` for a folder."""
        if self.controls.source.value == SERIES:
            if not str(self.controls.series_folder.value).strip():
                from ...errors import SAMError

                raise SAMError("Choose the image-series folder to train on (Folder\u2026).")
            return None
        return layer_training_data(self.viewer, self._not_training_labels())

    def choose_series_folder(self, _value=None) -> None:
        from qtpy.QtWidgets import QFileDialog

        name = QFileDialog.getExistingDirectory(
            self.native, "Image-series folder", str(Path.home())
        )
        if name:
            self.controls.series_folder.value = name

    def choose_output(self, _value=None) -> None:
        """Ask for the folder the new model is written to (a new one, by name)."""
        from qtpy.QtWidgets import QFileDialog

        start = self.controls.output.value or str(default_output(self._base_model_text()))
        name, _ = QFileDialog.getSaveFileName(self.native, "Save the fine-tuned model as", start)
        if name:
            self.controls.output.value = name

    # --- running ----------------------------------------------------------------------

    def _base_model_text(self) -> str:
        return str(self.model_picker.field.value)

    def output_folder(self) -> Path:
        """The chosen folder, or a new default one; never an existing path."""
        from ...errors import SAMError

        text = str(self.controls.output.value).strip()
        path = Path(text).expanduser() if text else default_output(self._base_model_text())
        if path.exists():
            raise SAMError(f"{path} exists: choose a new folder for the fine-tuned model")
        return path

    def prepare(self) -> FineTuneJob:
        """The run the controls ask for; user errors are raised here, before any work."""
        c = self.controls
        data = self.training_data()
        output = self.output_folder()
        # shown, so that a cancelled run is resumed by pressing Fine-tune again
        c.output.value = str(output)
        return FineTuneJob(
            model_store=self.model_store,
            model_source=self.model_picker.source(),
            mode=str(c.mode.value),
            epochs=int(c.epochs.value),
            augment=bool(c.augment.value),
            validation=float(c.validation.value),
            output=output,
            data=data,
            series_folder=None if data is not None else str(c.series_folder.value),
            on_epoch=self._on_epoch,
            seed=int(self.training_options.get("seed", 0)),
            options={k: v for k, v in self.training_options.items() if k != "seed"},
        )

    def _description(self, job: FineTuneJob) -> str:
        what = job.data.describe() if job.data is not None else Path(job.series_folder).name
        return f"SAM: fine-tuning ({job.mode}, {job.epochs} epochs) on {what}"

    def _start(self, blocking: bool):
        if self.busy and not blocking:
            return None
        try:
            job = self.prepare()
        except USER_ERRORS as error:
            self.user_error(error)
            return None
        if not ml_stack_ready():
            return None
        self.plot.clear()
        self.controls.results.value = ""
        self.outcome = None
        if blocking:
            outcome = self.runner.run(job, self._description(job))
            return None if outcome is None else self._done(outcome)
        self.runner.start(job, self._description(job), partial(self._done))
        return None

    def _on_run_clicked(self, _value=None) -> None:
        self._start(blocking=False)

    def run(self) -> FineTuneOutcome | None:
        """Fine-tune now (blocking; for scripts); the outcome, or ``None`` after an error."""
        self.runner.wait()
        return self._start(blocking=True)

    def _on_busy(self, busy: bool) -> None:
        super()._on_busy(busy)
        self.controls.run_button.enabled = not busy

    def _on_epoch(self, history) -> None:
        """From the worker: keep the history, draw it on the Qt thread."""
        with self._history_lock:
            self._history = history
        self._plot_relay.changed.emit()

    def _show_history(self) -> None:
        if not self.alive():
            return
        with self._history_lock:
            history = self._history
        self.plot.show_history(history)

    def _done(self, outcome: FineTuneOutcome) -> FineTuneOutcome:
        self.outcome = outcome
        source = str(outcome.path)
        self.model_store.add(source, outcome.network)  # loaded: every widget can use it now
        offer_model(source, self.session)
        self.plot.show_history(outcome.history)
        self.controls.results.value = results_html(outcome.rows)
        self.controls.output.value = ""  # the next run gets a new folder
        if self.alive():
            self.status.show(f"saved {source}; it is in the segmentation widgets' recent models")
        return outcome


def series_summary(folder: str) -> str:
    """How many images of an image-series folder have saved labels (names only)."""
    from ...errors import SAMError
    from ...files.image_series import ImageSeries

    if not str(folder).strip():
        return "choose the folder you annotated with the Image series widget"
    try:
        series = ImageSeries(folder)
    except SAMError as error:
        return str(error)
    done = sum(series.label_path(i).exists() for i in range(len(series.images)))
    return f"{done} of {len(series.images)} images of {series.folder.name} have saved labels"
