"""Refining a label: its mask as SAM's mask input, plus its box (:class:`RefineJob`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...processing.mask_prompts import mask_box, mask_to_low_res_logits
from ..layers.image_slices import ImageSlice
from ..layers.prompts_from_layers import SlicePrompts
from .slice_embedding import set_slice_embedding
from .steps import Report, load_network, predictor_for, step


def level_mask(image_slice: ImageSlice, mask: np.ndarray) -> np.ndarray:
    """A full-resolution 2D mask sampled (nearest) at the slice's pyramid level."""
    mask = np.asarray(mask, bool)
    h, w = image_slice.data.shape[:2]
    if mask.shape == (h, w):
        return mask
    rows = np.minimum(
        ((np.arange(h) + 0.5) * image_slice.downsample[0]).astype(int), mask.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(w) + 0.5) * image_slice.downsample[1]).astype(int), mask.shape[1] - 1
    )
    return mask[np.ix_(rows, cols)]


@dataclass(frozen=True, eq=False)
class RefineJob:
    """Refine one existing label on a slice: its mask as SAM's mask input, plus its box.

    Points on the slice (``prompts``, may be ``None``) are added to the prompt.  Called as
    ``job(models, predictors, session, report)``, like :class:`~.prompt_job.PromptJob`.
    """

    image_slice: ImageSlice
    label_mask: np.ndarray
    prompts: SlicePrompts | None
    model_source: str

    def __call__(self, models, predictors: dict, session, report: Report) -> list[np.ndarray]:
        report(0, 3)
        network = load_network(models, self.model_source, report)
        report(1, 3)
        predictor = predictor_for(network, predictors)
        set_slice_embedding(predictor, self.image_slice, session, report)
        report(2, 3)
        step(report, "refining the label")
        mask = level_mask(self.image_slice, self.label_mask)
        config = predictor.network.config
        logits = mask_to_low_res_logits(
            mask,
            predictor.embedding_state().input_size,
            config.image_size,
            config.low_res_mask_size,
        )
        kwargs = {"box": mask_box(mask).astype(np.float32), "mask_input": logits}
        prompts = self.prompts
        if prompts is not None and len(prompts.points_xy):
            kwargs["point_coords"] = self.image_slice.to_level_xy(prompts.points_xy)
            kwargs["point_labels"] = prompts.point_labels
        refined, _score = predictor.predict_best(**kwargs, multimask_output=False)
        report(3, 3)
        return [self.image_slice.to_full_resolution(np.asarray(refined, bool))]
