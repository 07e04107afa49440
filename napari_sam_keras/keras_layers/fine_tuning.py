"""Keras models and losses of fine-tuning: one ``train_on_batch`` loop on every backend.

* :class:`PromptTrainingModel`: a padded prompt batch on one image (its
  embedding, or the image itself when the encoder is trained) -> low-res
  mask logits and IoU predictions, with micro-sam's loss as its
  ``compute_loss``: Dice on the masks (the best of the three outputs for a
  multimask prompt) + the squared error of the IoU head against the mask's
  actual IoU.
* :func:`instance_decoder_loss`: torch-em's ``DiceBasedDistanceLoss`` with
  the distances masked to the foreground, for the instance decoder.

Import this module only after the Keras backend is chosen.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from ..model.config import SAMConfig
from .prompt_decoder import PromptDecoder

EPS = 1e-7


def dice_loss(prediction: Any, target: Any, axes: tuple[int, ...]) -> Any:
    """torch-em's Dice loss, 1 - 2 sum(p t) / (sum(p^2) + sum(t^2)), summed over ``axes``."""
    numerator = ops.sum(prediction * target, axis=axes)
    denominator = ops.sum(prediction * prediction, axis=axes) + ops.sum(target * target, axis=axes)
    return 1.0 - 2.0 * numerator / ops.maximum(denominator, EPS)


class PromptTrainingModel(keras.Model):
    """Trains SAM's prompt encoder and mask decoder (and the image encoder when given).

    Inputs (a dict): the padded prompts of
    :func:`~napari_sam_keras.model.prompt_path.padded_prompts` (with mask
    inputs) plus ``embedding`` (1, e, e, c), or ``image`` (1, S, S, 3) when
    ``image_encoder`` is given.  Targets (a dict): ``target`` (B, m, m) 0/1,
    ``multimask`` (B,) 1 for a first single-point prompt, ``weight`` (B,) 0
    for padding.
    """

    def __init__(
        self, sam_model: Any, config: SAMConfig, image_encoder: Any | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.decoder = PromptDecoder(sam_model.prompt_encoder, sam_model.mask_decoder, config)
        self.image_encoder = image_encoder
        self.built = True

    def call(self, inputs, training=False):
        if self.image_encoder is not None:
            embedding = self.image_encoder(inputs["image"])
        else:
            embedding = inputs["embedding"]
        skip = ("image", "embedding", "mask_input", "has_mask")
        prompts = {k: v for k, v in inputs.items() if k not in skip}
        # every prompt gets its own image side (its mask input or the "no mask" vector);
        # computed for all, without the inference path's branch, which costs compile time
        encoder = self.decoder.prompt_encoder
        no_mask = ops.reshape(
            encoder.no_mask_embed(ops.zeros((1,), "int32")),
            (1, 1, 1, self.decoder.sam_config.prompt_embed_dim),
        )
        has_mask = ops.reshape(inputs["has_mask"], (-1, 1, 1, 1))
        dense = has_mask * encoder.mask_downscaler(inputs["mask_input"]) + (1 - has_mask) * no_mask
        prepared = self.decoder.prepare_image(embedding, dense)
        return self.decoder.call({**prompts, **prepared}, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits = y_pred["low_res_logits"]  # (B, 4, m, m)
        iou_pred = ops.cast(y_pred["iou_predictions"], "float32")
        logits = ops.cast(logits, "float32")
        target = ops.cast(y["target"], "float32")[:, None]
        multimask = ops.cast(y["multimask"], "float32")
        weight = ops.cast(y["weight"], "float32")
        dice = dice_loss(ops.sigmoid(logits), target, (2, 3))  # (B, 4)
        mask_loss = multimask * ops.min(dice[:, 1:], axis=1) + (1 - multimask) * dice[:, 0]
        hard = ops.cast(logits > 0, "float32")
        inter = ops.sum(hard * target, axis=(2, 3))
        union = ops.sum(ops.maximum(hard, target), axis=(2, 3))
        true_iou = ops.stop_gradient(inter / (union + EPS))
        squared = ops.square(iou_pred - true_iou)
        iou_loss = multimask * ops.mean(squared[:, 1:], axis=1) + (1 - multimask) * squared[:, 0]
        total = ops.sum(weight * (mask_loss + iou_loss)) / ops.maximum(ops.sum(weight), 1.0)
        return total


def instance_decoder_loss(y_true: Any, y_pred: Any) -> Any:
    """torch-em ``DiceBasedDistanceLoss(mask_distances_in_bg=True)``, channels last.

    Dice of the foreground channel, plus Dice of each distance channel with
    prediction and target multiplied by the foreground target.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    axes = (0, 1, 2)
    foreground = y_true[..., 0]
    loss = dice_loss(y_pred[..., 0], foreground, axes)
    for channel in (1, 2):
        loss = loss + dice_loss(
            y_pred[..., channel] * foreground, y_true[..., channel] * foreground, axes
        )
    return loss
