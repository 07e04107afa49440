"""The Fine-tune widget's work for a worker thread: plain arrays and paths in, a saved model out.

Fine-tune (:func:`~napari_sam_keras.finetune`, which measures the base model and every
epoch on the held-out images), then save the model (:func:`~napari_sam_keras.save_model`).
Saving comes last, so a cancelled or failed run leaves no model folder.  Each finished
epoch's history is handed to ``on_epoch`` (from the worker thread) for the live plot.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import SAMError
from ...processing.training_figures import EpochWatcher, before_after_rows, validation_figures
from ..layers.finetune_data import TrainingData, series_training_data


@dataclass
class FineTuneOutcome:
    """What a finished run hands back to the widget."""

    network: Any
    path: Path
    history: Any
    rows: list  # (name, before, after, gain)


@dataclass
class FineTuneJob:
    """One fine-tuning run; call it with the task's ``progress``.

    Checkpoints go to ``<output>.checkpoints`` (removed once the model is saved): a run
    cancelled or interrupted is resumed by fine-tuning again into the same folder.
    """

    model_store: Any
    model_source: str
    mode: str
    epochs: int
    validation: float
    output: Path
    augment: bool
    data: TrainingData | None = None  # from layers (read on the Qt thread) ...
    series_folder: str | None = None  # ... or an image-series folder (read here)
    on_epoch: Callable[[Any], None] = lambda history: None
    seed: int = 0
    options: dict = field(default_factory=dict)  # more finetune() settings (scripts)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.output).with_name(Path(self.output).name + ".checkpoints")

    def __call__(self, progress) -> FineTuneOutcome:
        from ... import evaluate_prompts, finetune, save_model

        data = self.data
        if data is None:
            progress.step("reading the image series")
            data = series_training_data(self.series_folder)
        if Path(self.output).exists():
            raise SAMError(f"{self.output} exists: choose a new folder for the model")
        progress.step("loading the base model")
        network = self.model_store.get(self.model_source)
        progress.step(f"training on {data.describe()}")
        watcher = EpochWatcher(self.checkpoint_dir, self.epochs, self.on_epoch, progress)
        result = finetune(
            network,
            data.images,
            data.labels,
            mode=self.mode,
            epochs=self.epochs,
            augment=self.augment,
            validation=self.validation,
            seed=self.seed,
            checkpoint_dir=self.checkpoint_dir,
            progress=watcher,
            **self.options,
        )
        watcher.finish(result.history)
        before = validation_figures(result.before)
        after = validation_figures(result.history[-1] if result.history else None)
        if not before:  # nothing held out: the figures on the training images
            progress.step("measuring the base and the fine-tuned model")
            before = evaluate_prompts(network, data.images, data.labels, progress=progress)
            after = evaluate_prompts(result.model, data.images, data.labels, progress=progress)
        progress.step("saving the model")
        Path(self.output).parent.mkdir(parents=True, exist_ok=True)
        save_model(result, self.output)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        return FineTuneOutcome(
            network=result.model,
            path=Path(self.output),
            history=result.history,
            rows=before_after_rows(before, after),
        )
