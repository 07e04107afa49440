"""``napari-sam-keras finetune`` and ``evaluate``: training data from files, figures printed.

Both pair ``--images`` with ``--labels`` by name (:mod:`..files.training_pairs`) and fail on
any unpaired file before the model loads.  ``finetune`` prints the held-out images' click
and box IoU of the base model and of the fine-tuned one; ``evaluate`` prints them for one
model, plus the instance segmentation's mSA, SA50, SA75 and F1.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from ..errors import SAMError
from ..files.training_pairs import pair_files, read_pairs
from ..processing.training_figures import (
    EpochWatcher,
    before_after_rows,
    figure_rows,
    format_rows,
    latest_loss,
    validation_figures,
)
from .commands import _info, _load_model

MODES = ("decoder", "lora", "full")
INSTANCE_CHOICES = ("auto", "ais", "amg", "none")


def checkpoint_folder(out: Path) -> Path:
    """Where ``finetune --out OUT`` keeps its per-epoch checkpoints until it ends."""
    return out.with_name(out.name + ".checkpoints")


def _check_numbers(args) -> None:
    if args.epochs is not None and args.epochs < 1:
        raise SAMError("--epochs must be at least 1")
    if not 0 <= args.validation < 1:
        raise SAMError("--validation must be in [0, 1): the fraction of images held out")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise SAMError("--learning-rate must be positive")
    if args.objects_per_image is not None and args.objects_per_image < 1:
        raise SAMError("--objects-per-image must be at least 1")
    if getattr(args, "quantize", None):
        raise SAMError("finetune trains float32 weights: leave out --quantize")


def _check_out(out: Path, resume: bool) -> Path:
    """The new model folder and its checkpoint folder, checked before any work."""
    if out.exists():
        raise SAMError(f"{out} exists: choose a new folder for the fine-tuned model")
    if not out.parent.is_dir():
        raise SAMError(f"the folder of --out does not exist: {out.parent}")
    checkpoints = checkpoint_folder(out)
    if resume and not checkpoints.is_dir():
        raise SAMError(f"nothing to resume: {checkpoints} does not exist")
    if not resume and checkpoints.exists():
        raise SAMError(
            f"an interrupted run left its checkpoints in {checkpoints}: add --resume to "
            "continue it, or delete that folder to start again"
        )
    return checkpoints


class TrainingDisplay:
    """``progress(done, total)`` for ``finetune``: a bar with the last loss on a terminal;
    one line per finished epoch (:meth:`epoch_done`) everywhere."""

    WIDTH = 24

    def __init__(self, stream=None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.loss: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        total = max(int(total), 1)
        filled = self.WIDTH * min(done, total) // total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        loss = f"  loss {self.loss:.4f}" if self.loss is not None else ""
        elapsed = time.perf_counter() - self.start
        line = f"\r\033[Ktraining [{bar}] step {done}/{total}{loss}  {elapsed:.0f} s"
        print(line[:200], end="", file=self.stream, flush=True)

    def epoch_done(self, history) -> None:
        """Epochs finished: ``history`` holds the record of each one so far."""
        self.loss = latest_loss(history)
        figures = ", ".join(f"{name} {value:.3f}" for name, value in figure_rows(history[-1]))
        if self.tty:
            print("\r\033[K", end="", file=self.stream)
        print(f"epoch {len(history)}: {figures}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=self.stream, flush=True)


def _default_epochs() -> int:
    import inspect

    from .. import finetune

    return int(inspect.signature(finetune).parameters["epochs"].default)


def cmd_finetune(args) -> int:
    _check_numbers(args)
    out = Path(args.out)
    checkpoints = _check_out(out, args.resume)
    pairs = pair_files(args.images, args.labels)
    images, labels = read_pairs(pairs)
    _info(f"{len(pairs)} annotated images")
    network = _load_model(args)

    from .. import finetune, save_model

    options = {
        name: getattr(args, name)
        for name in ("epochs", "learning_rate", "objects_per_image")
        if getattr(args, name) is not None
    }
    display = TrainingDisplay()
    epochs = args.epochs or _default_epochs()
    watcher = EpochWatcher(checkpoints, epochs, display.epoch_done, display)
    t0 = time.perf_counter()
    try:
        result = finetune(
            network,
            images,
            labels,
            mode=args.mode,
            validation=args.validation,
            instance_decoder=args.instance_decoder,
            augment=args.augment,
            seed=args.seed,
            checkpoint_dir=checkpoints,
            progress=watcher,
            **options,
        )
        watcher.finish(result.history)
    finally:
        display.close()
    _info(f"fine-tuned in {time.perf_counter() - t0:.1f} s")
    save_model(result, out)
    shutil.rmtree(checkpoints, ignore_errors=True)
    before = validation_figures(result.before)
    after = validation_figures(result.history[-1] if result.history else None)
    where = "held-out images"
    if not before:  # nothing held out: measure on the training images
        from .. import evaluate_prompts

        where = "training images (nothing was held out)"
        before = evaluate_prompts(network, images, labels)
        after = evaluate_prompts(result.model, images, labels)
    print(f"before and after fine-tuning, on the {where}:")
    print(format_rows(["", "before", "after", "gain"], before_after_rows(before, after)))
    print(f"wrote {out}")
    return 0


def cmd_evaluate(args) -> int:
    pairs = pair_files(args.images, args.labels)
    images, labels = read_pairs(pairs)
    network = _load_model(args)

    from .. import evaluate_prompts

    t0 = time.perf_counter()
    prompts = evaluate_prompts(network, images, labels)
    _info(f"prompts measured in {time.perf_counter() - t0:.1f} s")
    rows = figure_rows(prompts)
    method = args.instances
    if method == "auto":
        method = "ais" if getattr(network, "instance_decoder", None) is not None else "none"
        if method == "none":
            _info(
                "the model has no instance decoder: no mSA (give --instances amg for the "
                "automatic mask generator)"
            )
    elif method == "ais" and getattr(network, "instance_decoder", None) is None:
        raise SAMError(f"{network.name} has no instance decoder: use --instances amg or none")
    if method != "none":
        t0 = time.perf_counter()
        rows += figure_rows(_instance_figures(network, images, labels, method))
        _info(f"automatic segmentation ({method}) measured in {time.perf_counter() - t0:.1f} s")
    print(f"{len(images)} images, {prompts.get('objects', '?')} objects:")
    print(format_rows(["", "value"], rows))
    return 0


def _instance_figures(network, images, labels, method: str):
    """mSA, SA50, SA75, F1 of the automatic segmentation, averaged over the images (planes)."""
    from .. import evaluate_instances

    scores = []
    for image, label in zip(images, labels, strict=True):
        planes = [(image, label)] if label.ndim == 2 else list(zip(image, label, strict=True))
        for plane, plane_labels in planes:
            scores.append(evaluate_instances(_segment(network, plane, method), plane_labels))
    return {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}


def _segment(network, image, method: str):
    if method == "ais":
        from .. import InstanceSegmenter

        return InstanceSegmenter(network).segment(image)
    from .. import SAMAutomaticMaskGenerator, masks_to_labels

    records = SAMAutomaticMaskGenerator(network).generate(image)
    return masks_to_labels(records, shape=image.shape[:2])
