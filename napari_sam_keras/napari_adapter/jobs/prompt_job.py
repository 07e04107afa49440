"""The interactive widget's click: segment the prompts on one slice (:class:`PromptJob`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...segmentation.prompt_objects import predict_objects as core_predict_objects
from ..layers.image_slices import ImageSlice
from ..layers.prompts_from_layers import SlicePrompts, objects_on_slice
from .slice_embedding import Tiling, set_slice_embedding
from .steps import Report, load_network, predictor_for, step


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
    """Segment the prompts on one slice (interactive widget).

    Called as ``job(models, predictors, session, report)``: the widget's ``ModelStore``,
    its predictors by model key, the :class:`~..session.Session` (embeddings, stores).
    """

    image_slice: ImageSlice
    prompts: SlicePrompts | None
    model_source: str
    multimask: bool = True
    embed_only: bool = False
    tiling: Tiling = None  # (tile shape, halo): the slice is cut into tiles

    def __call__(self, models, predictors: dict, session, report: Report) -> list[np.ndarray]:
        total = 2 if self.embed_only else 3
        report(0, total)
        network = load_network(models, self.model_source, report)
        report(1, total)
        predictor = predictor_for(network, predictors)
        set_slice_embedding(predictor, self.image_slice, session, report, tiling=self.tiling)
        report(2, total)
        if self.embed_only:
            if self.tiling is not None:
                step(report, "embedding every tile")
                predictor.embed_tiles()
                session.warm.add(network.key)
            return []
        tiles = "" if self.tiling is None else " (embedding the tiles it needs)"
        step(report, f"predicting the mask{tiles}")
        masks = predict_objects(predictor, self.image_slice, self.prompts, self.multimask)
        if self.tiling is not None:
            session.warm.add(network.key)
        report(3, total)
        return masks
