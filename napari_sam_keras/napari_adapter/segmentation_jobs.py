"""The work the widgets hand to a worker thread: plain arrays in, masks out, no layer access.

Everything a job needs is captured on the GUI thread first (the slice's
pixels, the prompts, the model source); the job only talks to the core
(:class:`~napari_sam_keras.SAMPredictor`, the automatic mask generator), and its
result is written into layers back on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..segmentation.prompt_objects import predict_objects as core_predict_objects
from .image_slices import ImageSlice, make_slice
from .prompts_from_layers import SlicePrompts, objects_on_slice

Report = Callable[[int, int], None]


def embedding_key(image_slice: ImageSlice, model_key: str) -> tuple:
    """Cache key of a slice's embedding: the slice's pixels and the model."""
    return (*image_slice.key, model_key)


def embed(predictor, image_slice: ImageSlice, cache) -> bool:
    """Give ``predictor`` the slice's embedding, from ``cache`` or computed; True if computed."""
    key = embedding_key(image_slice, predictor.network.key)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        predictor.set_embedding(cached)
        return False
    predictor.set_image(image_slice.data, contrast_limits=image_slice.contrast_limits)
    if cache is not None:
        cache.put(key, predictor.embedding_state())
    return True


def predict_objects(
    predictor, image_slice: ImageSlice, prompts: SlicePrompts, multimask: bool = True
) -> list[np.ndarray]:
    """One full-resolution (H, W) boolean mask per object in ``prompts``.

    The predictor must hold the slice's embedding; the prompts are mapped to
    the slice's resolution level, and the masks back to full resolution.
    """
    objects = [
        obj.mapped(image_slice.to_level_xy, image_slice.boxes_to_level)
        for obj in objects_on_slice(prompts)
    ]
    results = core_predict_objects(predictor, objects, multimask=multimask)
    return [image_slice.to_full_resolution(mask) for mask, _ in results]


@dataclass(frozen=True, eq=False)
class PromptJob:
    """Segment the prompts on one slice (interactive widget)."""

    image_slice: ImageSlice
    prompts: SlicePrompts | None
    model_source: str
    multimask: bool = True
    embed_only: bool = False

    def __call__(self, models, predictors: dict, cache, report: Report) -> list[np.ndarray]:
        from .. import SAMPredictor

        total = 2 if self.embed_only else 3
        report(0, total)
        network = models.get(self.model_source)
        report(1, total)
        predictor = predictors.get(network.key)
        if predictor is None:
            predictor = predictors.setdefault(network.key, SAMPredictor(network))
        embed(predictor, self.image_slice, cache)
        report(2, total)
        if self.embed_only:
            return []
        masks = predict_objects(predictor, self.image_slice, self.prompts, self.multimask)
        report(3, total)
        return masks


@dataclass(frozen=True, eq=False)
class AutomaticJob:
    """Run the automatic mask generator on one or more slices of an image layer."""

    layer: object
    indices: Sequence[tuple]
    slice_axes: tuple[int, int]
    model_source: str
    generator_options: dict
    max_side: int | None = None

    def __call__(self, models, cache, report: Report) -> list[tuple[ImageSlice, np.ndarray]]:
        from .. import SAMAutomaticMaskGenerator, SAMPredictor, masks_to_labels

        n = len(self.indices)
        report(0, 0)
        network = models.get(self.model_source)
        predictor = SAMPredictor(network)
        generator = SAMAutomaticMaskGenerator(predictor, **self.generator_options)
        results = []
        steps = 1000
        for k, index in enumerate(self.indices):

            def progress(done: int, total: int, k=k) -> None:
                fraction = done / total if total else 0.0
                report(int((k + min(fraction, 1.0)) * steps), n * steps)

            report(k * steps, n * steps)
            image_slice = make_slice(self.layer, index, self.slice_axes, self.max_side)
            # the slice's embedding from (or into) the cache the interactive widget shares
            embed(predictor, image_slice, cache)
            records = generator.generate(
                image_slice.data,
                progress=progress,
                contrast_limits=image_slice.contrast_limits,
                embedding=predictor.embedding_state(),
            )
            label_image = masks_to_labels(records, shape=image_slice.data.shape[:2])
            results.append((image_slice, image_slice.to_full_resolution(label_image)))
        report(n * steps, n * steps)
        return results
