"""The Fine-tune widget's work for a worker thread: plain arrays and paths in, a saved model out.

Measure the base model on the held-out images, fine-tune (:func:`~napari_sam_keras.finetune`),
measure the new model, then save it (:func:`~napari_sam_keras.save_model`).  Saving comes
last, so a cancelled or failed run leaves no model folder.  Each finished epoch's history
is handed to ``on_epoch`` (from the worker thread) for the live plot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SAMError
from ..processing.training_figures import before_after_rows
from .finetune_data import TrainingData, series_training_data


@dataclass
class FineTuneOutcome:
    """What a finished run hands back to the widget."""

    network: Any
    path: Path
    history: Any
    rows: list  # (name, before, after, gain)


class TrainingProgress:
    """The ``progress`` given to ``finetune``: forwards to the task's progress (which raises
    ``OperationCancelled`` once cancelled) and hands epoch histories to ``on_epoch``."""

    def __init__(self, progress, on_epoch: Callable[[Any], None]) -> None:
        self._progress = progress
        self._on_epoch = on_epoch

    def __call__(self, done: int, total: int) -> None:
        self._progress(done, total)

    def step(self, text: str) -> None:
        self._progress.step(text)

    def epoch_done(self, history) -> None:
        self._on_epoch(history)


@dataclass
class FineTuneJob:
    """One fine-tuning run; call it with the task's ``progress``."""

    model_store: Any
    model_source: str
    mode: str
    epochs: int
    validation: float
    output: Path
    data: TrainingData | None = None  # from layers (read on the Qt thread) ...
    series_folder: str | None = None  # ... or an image-series folder (read here)
    on_epoch: Callable[[Any], None] = lambda history: None
    seed: int = 0

    def __call__(self, progress) -> FineTuneOutcome:
        from .. import evaluate_prompts, finetune, save_model

        data = self.data
        if data is None:
            progress.step("reading the image series")
            data = series_training_data(self.series_folder)
        if Path(self.output).exists():
            raise SAMError(f"{self.output} exists: choose a new folder for the model")
        progress.step("loading the base model")
        network = self.model_store.get(self.model_source)
        val_images, val_labels = held_out(data, self.validation, self.seed)
        progress.step("measuring the base model")
        before = evaluate_prompts(network, val_images, val_labels)
        progress.step("training")
        result = finetune(
            network,
            data.images,
            data.labels,
            mode=self.mode,
            epochs=self.epochs,
            validation=self.validation,
            seed=self.seed,
            progress=TrainingProgress(progress, self.on_epoch),
        )
        progress.step("measuring the fine-tuned model")
        after = evaluate_prompts(result.model, val_images, val_labels)
        progress.step("saving the model")
        Path(self.output).parent.mkdir(parents=True, exist_ok=True)
        save_model(result.model, self.output)
        return FineTuneOutcome(
            network=result.model,
            path=Path(self.output),
            history=result.history,
            rows=before_after_rows(before, after),
        )


def held_out(data: TrainingData, fraction: float, seed: int):
    """The held-out images and labels (finetune's own split when the core exposes it)."""
    from .. import training

    split = getattr(training, "validation_split", None)
    if split is None or fraction <= 0:
        return data.images, data.labels
    return split(data.images, data.labels, fraction, seed=seed)
