"""``finetune``: adapt a SAM network (and its instance decoder) to annotated images.

The training signal is micro-sam's (``micro_sam/training/sam_trainer.py``):
per step one image and a sample of its objects, each prompted first by one
positive point (even steps; the loss then takes the best of the three
multimask outputs) or by its box (odd steps), then ``prompt_iterations``
rounds that each add a positive and a negative corrective point sampled from
the current error, with the previous low-res logits as mask input (for all
objects of a step, with probability 1/2 per round).  The loss is Dice on the
masks plus the squared error of the IoU head, averaged over the rounds.

The rounds' predictions are made outside the gradient with the compiled
prompt path (numpy in, numpy out); the collected prompts then go through one
``train_on_batch`` of a Keras model
(:class:`~napari_sam_keras.keras_layers.fine_tuning.PromptTrainingModel`),
so one loop runs on jax, tensorflow and torch.  As in micro-sam the rounds
of a step use the weights of that step and their mask inputs carry no
gradient, so this is the same gradient.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import TrainingSettingsError
from ..model.embedding import EmbeddingCache, ImageEmbedding
from ..model.network import SAMNetwork
from ..model.quantization import require_float_encoder
from .data import (
    VARIANTS,
    RawPlane,
    TrainingPlane,
    check_training_data,
    model_frame_plane,
    split_validation,
)
from .prompt_sampling import (
    ObjectPrompt,
    best_output,
    corrective_points,
    first_prompt,
)

MODES = ("decoder", "lora", "full")

#: The probability that a correction round feeds the previous logits as mask input.
MASK_INPUT_PROBABILITY = 0.5
#: How much faster a newly created instance decoder learns than the pretrained parts.
NEW_DECODER_LR_FACTOR = 10.0
#: The instance decoder trains on windows of this many embedding cells a side.
DECODER_WINDOW = 32


@dataclass
class FineTuneResult:
    """What :func:`finetune` returns.

    Attributes:
        model: the fine-tuned network (usable wherever a
            :func:`~napari_sam_keras.load_model` network is); in ``"lora"``
            mode its encoder carries the adapters (merged on
            :func:`~napari_sam_keras.save_model`).
        history: one dict per epoch: ``epoch``, ``loss`` (mean prompt loss),
            ``instance_loss`` (instance decoder, or None), ``val_point_iou``,
            ``val_box_iou`` (mean IoU of single-point and box prompts on the
            validation images; None without validation), ``val_msa`` (the
            instance decoder's mSA there, or None).
        before: the validation figures of the base model (same keys).
        training: what it was trained on and how (saved with the model).
    """

    model: SAMNetwork
    history: list[dict[str, Any]] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def _check_settings(
    mode, epochs, validation, objects_per_image, prompt_iterations, learning_rate, embeddings
) -> None:
    if mode not in MODES:
        raise TrainingSettingsError(f"Unknown fine-tuning mode {mode!r}; use one of {MODES}.")
    for name, value, least in (
        ("epochs", epochs, 1),
        ("objects_per_image", objects_per_image, 1),
        ("prompt_iterations", prompt_iterations, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise TrainingSettingsError(f"{name} must be an integer >= {least}, not {value!r}.")
    if not isinstance(validation, int | float) or not 0 <= validation < 1:
        raise TrainingSettingsError(f"validation must be a fraction in [0, 1), not {validation!r}.")
    if not isinstance(learning_rate, int | float) or not learning_rate > 0:
        raise TrainingSettingsError(f"learning_rate must be > 0, not {learning_rate!r}.")
    if embeddings is not None and not isinstance(embeddings, EmbeddingCache | str | os.PathLike):
        raise TrainingSettingsError(
            "embeddings must be an EmbeddingCache or a folder for the embeddings of the "
            f"training images, not {type(embeddings).__name__}."
        )


def _base_network(model: Any) -> SAMNetwork:
    from ..segmentation.predictor import as_network

    if isinstance(model, str | os.PathLike):
        from ..model.loading import load_model

        return load_model(model)
    return as_network(model)


def _signature(planes: list[RawPlane], base: SAMNetwork, settings: dict) -> str:
    from ..model.weights_cache import model_checksum

    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    digest.update(str(base.config.to_json()).encode())
    digest.update(model_checksum(base.model).encode())
    if base.instance_decoder is not None:
        digest.update(model_checksum(base.instance_decoder.model).encode())
    for plane in planes:
        digest.update(np.ascontiguousarray(plane.image).tobytes())
        digest.update(np.ascontiguousarray(plane.labels).tobytes())
    return digest.hexdigest()


def finetune(
    model: Any,
    images: Any,
    labels: Any,
    *,
    mode: str = "decoder",
    epochs: int = 10,
    validation: float = 0.2,
    objects_per_image: int = 8,
    prompt_iterations: int = 3,
    instance_decoder: bool = True,
    augment: bool = True,
    learning_rate: float = 1e-4,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    embeddings: EmbeddingCache | str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
    lora_rank: int = 4,
) -> FineTuneResult:
    """Fine-tune a SAM network on annotated images (micro-sam's recipe, in Keras).

    Args:
        model: the network to start from (:func:`~napari_sam_keras.load_model`'s),
            or a model name/path; it is not changed (a copy is trained).
        images: a list of 2D images (grayscale or RGB) or (Z, Y, X) stacks
            (used slice by slice).
        labels: their instance labels (integers, 0 = background).
        mode: ``"decoder"`` (the image encoder frozen: each image and its
            augmented variants are embedded once; the prompt encoder, mask
            decoder and instance decoder train), ``"lora"`` (rank
            ``lora_rank`` adapters on the encoder's attention projections
            train as well) or ``"full"`` (everything trains).
        epochs: passes over the training images (each in 4 variants with
            ``augment``: as it is, turned 90 degrees, mirrored, mirrored
            upside down).
        validation: fraction of the images held out to measure IoU and mSA
            after every epoch (whole images; slices of one image when only one
            is given; none when fewer than two planes have objects).
        objects_per_image: objects sampled per training step.
        prompt_iterations: correction rounds after the first prompt.
        instance_decoder: also train the instance decoder (created when the
            model has none).
        augment: train on the 4 variants of every image (4 times the steps
            and, in ``"decoder"`` mode, 4 times the image embeddings); off, on
            the images as they are: with a large encoder on a CPU, where an
            embedding costs seconds, the quicker choice.
        learning_rate: AdamW's learning rate (a newly created instance decoder
            uses 10 times it).
        seed: fixes the split, the sampling and the prompts.
        checkpoint_dir: a folder for a checkpoint after every epoch; a run
            started again with the same folder, data and settings resumes
            after the last complete epoch.
        embeddings: an :class:`~napari_sam_keras.EmbeddingCache` or a folder
            where the embeddings of the training images (and their variants)
            are kept, so that another run with the same base model computes
            none of them again (``"decoder"`` mode only).
        progress: ``progress(done, total)`` after every step; it may raise
            :class:`~napari_sam_keras.OperationCancelled` to stop (checkpoints
            already written stay, nothing else is written).

    Returns:
        A :class:`FineTuneResult`.

    Raises:
        TrainingSettingsError, TrainingDataError: bad settings or data,
            before any work.
    """
    _check_settings(
        mode, epochs, validation, objects_per_image, prompt_iterations, learning_rate, embeddings
    )
    raw = check_training_data(images, labels)
    base = _base_network(model)
    require_float_encoder(base, "fine-tune")
    settings = dict(
        mode=mode,
        epochs=int(epochs),
        validation=float(validation),
        objects_per_image=int(objects_per_image),
        prompt_iterations=int(prompt_iterations),
        instance_decoder=bool(instance_decoder),
        augment=bool(augment),
        learning_rate=float(learning_rate),
        seed=int(seed),
        lora_rank=int(lora_rank),
    )
    run = _Run(base, raw, settings, embeddings, progress)
    if checkpoint_dir is not None:
        run.resume(checkpoint_dir, _signature(raw, base, settings))
    return run.train(checkpoint_dir)


class _Run:
    """One fine-tuning run: the trained copy, its data, its Keras training models."""

    def __init__(self, base: SAMNetwork, raw, settings: dict, embeddings, progress) -> None:
        from ..model.network_copy import copy_network

        self.settings = settings
        self.progress = progress
        self.mode = settings["mode"]
        self.signature = ""
        rng = np.random.default_rng(settings["seed"])
        train_raw, val_raw = split_validation(raw, settings["validation"], rng)
        self.val_raw = val_raw
        self.base_key = base.key
        self.network = copy_network(base, name=f"{base.name} (fine-tuned)")
        self.config = self.network.config
        cfg = self.config
        self.new_decoder = False
        if settings["instance_decoder"] and self.network.instance_decoder is None:
            self.network.instance_decoder = _new_instance_decoder(cfg.prompt_embed_dim)
            self.new_decoder = True
        if self.mode == "lora":
            from .lora import enable_lora

            enable_lora(self.network, settings["lora_rank"])
        self.train_planes = [
            model_frame_plane(p, cfg.image_size, variant)
            for p in train_raw
            if p.labels.any()
            for variant in (VARIANTS if settings["augment"] else VARIANTS[:1])
        ]
        self.train_planes = [p for p in self.train_planes if len(p.object_ids)]
        if not self.train_planes:
            from ..errors import TrainingDataError

            raise TrainingDataError(
                "After holding out the validation images no training object is left (or all "
                "objects are smaller than 4 x 4 pixels at the model's input size)."
            )
        self.val_planes = val_raw
        self.embeddings = embeddings
        self.cache: dict[int, ImageEmbedding] = {}
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.before: dict[str, Any] = {}
        self._build_models()

    # --- Keras models ---------------------------------------------------------------------

    def _build_models(self) -> None:
        from ..keras_layers.fine_tuning import PromptTrainingModel, instance_decoder_loss
        from ..runtime.backend import import_keras

        keras = import_keras()
        lr = self.settings["learning_rate"]
        encoder = None if self.mode == "decoder" else self.network.image_encoder_model()
        self.prompt_model = PromptTrainingModel(self.network.model, self.config, encoder)
        self.prompt_model.compile(
            optimizer=keras.optimizers.AdamW(lr, weight_decay=1e-4, global_clipnorm=1.0),
            jit_compile="auto",
        )
        self.prompt_model.optimizer.build(self.prompt_model.trainable_variables)
        self.decoder_model = None
        decoder = self.network.instance_decoder
        if self.settings["instance_decoder"] and decoder is not None:
            factor = NEW_DECODER_LR_FACTOR if self.new_decoder else 1.0
            self.decoder_model = decoder.model
            self.decoder_model.compile(
                optimizer=keras.optimizers.AdamW(
                    lr * factor, weight_decay=1e-4, global_clipnorm=1.0
                ),
                loss=instance_decoder_loss,
                jit_compile="auto",
            )
            self.decoder_model.optimizer.build(self.decoder_model.trainable_variables)

    def _groups(self) -> dict[str, list[Any]]:
        groups = {
            "network": list(self.network.model.weights),
            "prompt_optimizer": list(self.prompt_model.optimizer.variables),
        }
        if self.decoder_model is not None:
            groups["decoder"] = list(self.decoder_model.weights)
            groups["decoder_optimizer"] = list(self.decoder_model.optimizer.variables)
        return groups

    # --- checkpoints ----------------------------------------------------------------------

    def resume(self, folder, signature: str) -> None:
        from .checkpoints import read_checkpoint, restore_group

        self.signature = signature
        found = read_checkpoint(folder, signature)
        if found is None:
            return
        state, arrays = found
        for group, variables in self._groups().items():
            restore_group(arrays, group, variables)
        self.history = state["history"]
        self.before = state.get("before", {})
        self.start_epoch = int(state["epochs_done"])
        self._weights_changed()

    def _save_checkpoint(self, folder, epochs_done: int) -> None:
        from .checkpoints import save_checkpoint

        state = {
            "signature": self.signature,
            "epochs_done": epochs_done,
            "history": self.history,
            "before": self.before,
        }
        save_checkpoint(folder, self._groups(), state)

    # --- embeddings -----------------------------------------------------------------------

    def _embed(self, resized: np.ndarray, original_size: tuple[int, int]) -> ImageEmbedding:
        return self.network.image_encoder().embed_resized(resized, original_size)

    def _cache_key(self, plane: TrainingPlane) -> str:
        digest = hashlib.sha1(np.ascontiguousarray(plane.resized).tobytes()).hexdigest()
        return f"finetune-{self.base_key}-{digest}"

    def train_embedding(self, plane: TrainingPlane) -> ImageEmbedding:
        """The plane's embedding: computed once in ``"decoder"`` mode, every time otherwise."""
        original = plane.resized.shape[:2]
        if self.mode != "decoder":
            return self._embed(plane.resized, original)
        if id(plane) in self.cache:
            return self.cache[id(plane)]
        emb = self._shared_embedding(plane)
        if emb is None:
            emb = self._embed(plane.resized, original)
            self._share_embedding(plane, emb)
        emb = replace(emb, model_key=self.network.key)
        self.cache[id(plane)] = emb
        return emb

    def _shared_embedding(self, plane: TrainingPlane) -> ImageEmbedding | None:
        key = self._cache_key(plane)
        if isinstance(self.embeddings, EmbeddingCache):
            return self.embeddings.get(key)
        if self.embeddings is not None:
            path = os.path.join(os.fspath(self.embeddings), key + ".npz")
            if os.path.isfile(path):
                try:
                    return ImageEmbedding.load(path)
                except Exception:  # damaged: compute again
                    return None
        return None

    def _share_embedding(self, plane: TrainingPlane, emb: ImageEmbedding) -> None:
        key = self._cache_key(plane)
        if isinstance(self.embeddings, EmbeddingCache):
            self.embeddings.put(key, emb)
        elif self.embeddings is not None:
            os.makedirs(os.fspath(self.embeddings), exist_ok=True)
            emb.save(os.path.join(os.fspath(self.embeddings), key + ".npz"))

    def val_embedding(self, plane: RawPlane) -> ImageEmbedding:
        from ..processing.images import resized_rgb_uint8

        if self.mode == "decoder" and id(plane) in self.cache:
            return self.cache[id(plane)]
        resized = resized_rgb_uint8(plane.image, self.config.image_size, plane.contrast_limits)
        emb = self._embed(resized, plane.labels.shape)
        if self.mode == "decoder":
            self.cache[id(plane)] = emb
        return emb

    # --- training -------------------------------------------------------------------------

    def _weights_changed(self) -> None:
        for (kind, _), part in list(self.network._compiled.items()):
            if kind == "prompt_path":
                part.forget_prepared()

    def train(self, checkpoint_dir) -> FineTuneResult:
        epochs = self.settings["epochs"]
        steps_per_epoch = len(self.train_planes)
        total = epochs * steps_per_epoch
        if not self.before:
            self.before = self.validate()
        for epoch in range(self.start_epoch, epochs):
            rng = np.random.default_rng([self.settings["seed"], epoch])
            losses, decoder_losses = [], []
            for i, index in enumerate(rng.permutation(steps_per_epoch)):
                plane = self.train_planes[int(index)]
                step = epoch * steps_per_epoch + i
                losses.append(self.prompt_step(plane, step, rng))
                if self.decoder_model is not None:
                    decoder_losses.append(self.decoder_step(plane, rng))
                if self.progress is not None:
                    self.progress(step + 1, total)
            record = {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "instance_loss": float(np.mean(decoder_losses)) if decoder_losses else None,
                **self.validate(),
            }
            self.history.append(record)
            if checkpoint_dir is not None:
                self._save_checkpoint(checkpoint_dir, epoch + 1)
        training = {
            "base_model": self.network.name.removesuffix(" (fine-tuned)"),
            "settings": self.settings,
            "training_planes": len({(p.source, p.variant[0] * 0) for p in self.train_planes}),
            "validation_planes": len(self.val_planes),
            "objects": int(
                sum(len(p.object_ids) for p in self.train_planes if p.variant == VARIANTS[0])
            ),
            "before": self.before,
            "after": {k: v for k, v in self.history[-1].items() if k.startswith("val_")},
        }
        return FineTuneResult(
            model=self.network, history=self.history, before=self.before, training=training
        )

    def prompt_step(self, plane: TrainingPlane, step: int, rng: np.random.Generator) -> float:
        """Sample one image's prompts (micro-sam's rounds) and train on them; the loss."""
        cfg = self.config
        emb = self.train_embedding(plane)
        features = np.asarray(emb.features, np.float32)
        count = self.settings["objects_per_image"]
        ids = plane.object_ids
        chosen = rng.choice(ids, size=min(count, len(ids)), replace=False)
        kind = "point" if step % 2 == 0 else "box"
        low = cfg.low_res_mask_size
        factor = cfg.image_size // low
        targets = [plane.low_res_target(int(i), low) for i in chosen]
        prompts = [first_prompt(plane.labels == i, kind, rng) for i in chosen]
        records: list[tuple[ObjectPrompt, np.ndarray, bool]] = []
        rounds = self.settings["prompt_iterations"] + 1
        self._weights_changed()
        path = self.network.prompt_path()
        for r in range(rounds):
            multimask = r == 0 and kind == "point"
            records.extend((p.copy(), t, multimask) for p, t in zip(prompts, targets, strict=True))
            if r == rounds - 1:
                break
            logits, iou = path.run(
                features,
                [p.points_or_none() for p in prompts],
                [p.labels_or_none() for p in prompts],
                [p.box for p in prompts],
                [p.mask_input for p in prompts],
            )
            use_mask = rng.random() < MASK_INPUT_PROBABILITY
            for k, (p, t) in enumerate(zip(prompts, targets, strict=True)):
                best = logits[k, best_output(iou[k], multimask)]
                points, labels = corrective_points(best > 0, t, factor, rng)
                p.points = np.concatenate([p.points, points]).astype(np.float32)
                p.labels = np.concatenate([p.labels, labels]).astype(np.int32)
                p.mask_input = best if use_mask else None
        x, y = self._batch(records, features, plane)
        logs = self.prompt_model.train_on_batch(x, y, return_dict=True)
        self._weights_changed()
        return float(logs["loss"])

    def _batch(self, records, features, plane: TrainingPlane):
        from ..model.prompt_path import padded_prompts
        from ..processing.images import pad_to_model_input

        cfg = self.config
        rounds = self.settings["prompt_iterations"] + 1
        size = self.settings["objects_per_image"] * rounds
        slots = 2 * rounds  # the first point, two per correction, the pad point
        x = padded_prompts(
            cfg,
            [p.points_or_none() for p, _, _ in records],
            [p.labels_or_none() for p, _, _ in records],
            [p.box for p, _, _ in records],
            [p.mask_input for p, _, _ in records],
            slots,
            size,
        )
        n = len(records)
        m = cfg.low_res_mask_size
        target = np.zeros((size, m, m), np.float32)
        multimask = np.zeros((size,), np.float32)
        weight = np.zeros((size,), np.float32)
        for i, (_, t, multi) in enumerate(records):
            target[i], multimask[i], weight[i] = t, float(multi), 1.0
        if n < size:  # padding entries repeat the first prompt with no weight
            for value in x.values():
                value[n:] = value[0]
        if self.mode == "decoder":
            x["embedding"] = features
        else:
            x["image"] = pad_to_model_input(plane.resized, cfg.image_size, cfg.pixel_mean)
        return x, {"target": target, "multimask": multimask, "weight": weight}

    def decoder_step(self, plane: TrainingPlane, rng: np.random.Generator) -> float:
        """Train the instance decoder on a random window of the plane (the loss).

        The decoder is fully convolutional, so it learns from a window of the
        embedding and the same window of the targets; a window of
        ``DECODER_WINDOW`` embedding cells (a quarter of ViT-B's 64 x 64) costs a
        quarter of the whole image's step.
        """
        from .distance_targets import distance_targets

        emb = self.train_embedding(plane)
        if plane.distance_target is None:
            plane.distance_target = distance_targets(plane.labels, min_size=16)
        features = np.asarray(emb.features, np.float32)
        cell = self.config.image_size // features.shape[1]  # input pixels per embedding cell
        rows, cols = _decoder_window(features.shape[1:3], plane.input_size, cell, rng)
        target = plane.distance_target[rows.start * cell : rows.stop * cell]
        target = target[:, cols.start * cell : cols.stop * cell]
        logs = self.decoder_model.train_on_batch(
            features[:, rows, cols], target[None], return_dict=True
        )
        return float(logs["loss"])

    # --- validation -----------------------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        from ..segmentation.predictor import SAMPredictor
        from .evaluation import _planes_ious, evaluate_instances, mean_prompt_ious

        out: dict[str, Any] = {"val_point_iou": None, "val_box_iou": None, "val_msa": None}
        if not self.val_planes:
            return out
        self._weights_changed()
        predictor = SAMPredictor(self.network, warm_up=False)
        means = mean_prompt_ious(
            _planes_ious(
                predictor, self.val_planes, self.settings["seed"], 0, None, self.val_embedding
            )
        )
        out["val_point_iou"], out["val_box_iou"] = means["point"], means["box"]
        if self.network.instance_decoder is not None and self.settings["instance_decoder"]:
            from ..segmentation.instance_segmenter import InstanceSegmenter

            segmenter = InstanceSegmenter(self.network, predictor=predictor)
            scores = [
                evaluate_instances(segmenter.segment(self.val_embedding(p)), p.labels)["msa"]
                for p in self.val_planes
            ]
            out["val_msa"] = float(np.mean(scores))
        return out


def _decoder_window(
    grid: tuple[int, int], input_size: tuple[int, int], cell: int, rng: np.random.Generator
) -> tuple[slice, slice]:
    """A random ``DECODER_WINDOW``-cell window of the embedding ``grid`` (``cell`` input
    pixels a side each) inside the image's part of the model frame (the whole grid when it
    is that small)."""
    window = []
    for n, size in zip(grid, input_size, strict=True):
        used = min(n, -(-int(size) // cell))  # cells that hold image pixels
        length = min(DECODER_WINDOW, n)
        start = int(rng.integers(0, max(used - length, 0) + 1))
        window.append(slice(start, start + length))
    return window[0], window[1]


def _new_instance_decoder(embed_dim: int):
    """A new instance decoder for ``embed_dim``-channel embeddings: micro-sam's layout with
    widths (2c, c, c/2, c/4) (micro-sam's own for SAM's 256 channels)."""
    from ..model.decoder_conversion import DecoderConfig, InstanceDecoder, build_instance_decoder

    c = int(embed_dim)
    config = DecoderConfig(embed_dim=c, features=(2 * c, c, max(c // 2, 1), max(c // 4, 1)))
    return InstanceDecoder(model=build_instance_decoder(config), config=config, key="new")
