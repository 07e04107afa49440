"""How far two embeddings of one image lead to different masks (e.g. int8 against float32).

Both embeddings are decoded by the same prompt path (prompt encoder + mask decoder) for
a grid of single positive points; per point the best mask (highest predicted IoU) of
each is upscaled to the image and the two masks compared by IoU.  Also reported: the
embedding drift, ``||candidate - reference|| / ||reference||``.  Used by
:func:`~napari_sam_keras.model.quantization.quantize_encoder`'s check and by
``benchmarks/quantize.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..processing.mask_upscaling import upscale_logits
from ..processing.prompts import to_input_frame
from .embedding import ImageEmbedding

#: Points per side of the prompt grid (8 x 8 = 64 prompts).
DEFAULT_POINTS_PER_SIDE = 8


@dataclass(frozen=True)
class EncoderAgreement:
    """Masks and embeddings of a candidate encoder against a reference one.

    Attributes:
        mean_iou: mean IoU of the best masks over the prompt grid (1.0: identical).
        min_iou: the lowest IoU of one prompt's masks.
        drift: relative L2 distance of the embeddings.
        prompts: how many point prompts were compared.
    """

    mean_iou: float
    min_iou: float
    drift: float
    prompts: int


def point_grid(size: tuple[int, int], per_side: int = DEFAULT_POINTS_PER_SIDE) -> np.ndarray:
    """(per_side ** 2, 2) points (x, y) at the centres of a per_side x per_side grid."""
    h, w = size
    ys = (np.arange(per_side) + 0.5) * h / per_side
    xs = (np.arange(per_side) + 0.5) * w / per_side
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)


def best_masks(
    network: Any, embedding: ImageEmbedding, points: np.ndarray, batch: int = 16
) -> np.ndarray:
    """Per point (x, y in the image), the best of SAM's three masks, (N, H, W) bool."""
    path = network.prompt_path()
    frame = to_input_frame(points, embedding.original_size, embedding.input_size)
    out = []
    for start in range(0, len(frame), batch):
        chunk = frame[start : start + batch]
        low_res, iou = path.run(
            embedding.features,
            [p[None] for p in chunk],
            [np.ones(1, np.int32)] * len(chunk),
            [None] * len(chunk),
            [None] * len(chunk),
            min_point_slots=1,
        )
        best = np.argmax(iou[:, 1:], axis=1) + 1  # the three multimask outputs
        low_res = low_res[np.arange(len(chunk)), best][:, None]
        logits = upscale_logits(
            low_res, network.config.image_size, embedding.input_size, embedding.original_size
        )
        out.append(logits[:, 0] > 0.0)
    return np.concatenate(out)


def embedding_agreement(
    network: Any,
    reference: ImageEmbedding,
    candidate: ImageEmbedding,
    per_side: int = DEFAULT_POINTS_PER_SIDE,
) -> EncoderAgreement:
    """Compare ``candidate`` with ``reference`` (embeddings of one image, same network)."""
    ref = np.asarray(reference.features, np.float64)
    cand = np.asarray(candidate.features, np.float64)
    drift = float(np.linalg.norm(cand - ref) / max(np.linalg.norm(ref), 1e-12))
    points = point_grid(reference.original_size, per_side)
    a = best_masks(network, reference, points)
    b = best_masks(network, candidate, points)
    union = (a | b).sum(axis=(1, 2))
    inter = (a & b).sum(axis=(1, 2))
    ious = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return EncoderAgreement(
        mean_iou=float(ious.mean()), min_iou=float(ious.min()), drift=drift, prompts=len(ious)
    )
