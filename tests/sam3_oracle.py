"""The test oracle for SAM 3: a tiny random Hugging Face ``transformers`` SAM 3, on PyTorch.

``save_tiny_sam3(folder)`` writes a tiny random ``Sam3Model`` with ``save_pretrained``
(``config.json`` + ``model.safetensors``) and a tiny CLIP ``tokenizer.json``: the folder a
user would download from the Hub, at toy sizes.  ``oracle_outputs`` runs transformers'
own processor and PyTorch forward on it.

TEST ONLY: transformers' box path calls ``torchvision.ops.roi_align``; the torchvision
wheel matching the project's CPU torch needs CUDA libraries, so :func:`roi_align` below,
a plain-torch port of torchvision's ``roi_align`` (``aligned=False``,
``sampling_ratio=-1``, as transformers calls it), stands in for it inside the oracle.
It is never used by the package.
"""

from __future__ import annotations

import math
import types
from pathlib import Path

import numpy as np

#: The tiny oracle's sizes: 112 px input (8 x 8 patches of 14), hidden 32, 8 queries.
IMAGE_SIZE = 112
WORDS = ("nucleus", "cell", "debris", "visual")


def _bilinear(feature, y, x):
    """torchvision's bilinear_interpolate on a (C, H, W) map at float positions (any shape)."""
    import torch

    c, height, width = feature.shape
    valid = (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    y = y.clamp(min=0)
    x = x.clamp(min=0)
    y_low = y.floor().long()
    x_low = x.floor().long()
    y_top = y_low >= height - 1
    x_top = x_low >= width - 1
    y_low = torch.where(y_top, torch.full_like(y_low, height - 1), y_low)
    x_low = torch.where(x_top, torch.full_like(x_low, width - 1), x_low)
    y = torch.where(y_top, y_low.to(y.dtype), y)
    x = torch.where(x_top, x_low.to(x.dtype), x)
    y_high = torch.where(y_top, y_low, y_low + 1)
    x_high = torch.where(x_top, x_low, x_low + 1)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    value = (
        feature[:, y_low, x_low] * (hy * hx)
        + feature[:, y_low, x_high] * (hy * lx)
        + feature[:, y_high, x_low] * (ly * hx)
        + feature[:, y_high, x_high] * (ly * lx)
    )
    return value * valid


def roi_align(features, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """Plain-torch ``torchvision.ops.roi_align``: ``boxes`` a list of (K, 4) XYXY per image, or
    one (K, 5) tensor of (image index, x0, y0, x1, y1) rows, as torchvision takes both."""
    import torch

    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if isinstance(boxes, torch.Tensor):  # one row at a time, in the rows' order
        pooled = [
            roi_align(
                features[int(row[0])][None],
                [row[None, 1:]],
                size,
                spatial_scale,
                sampling_ratio,
                aligned,
            )
            for row in boxes.detach()
        ]
        return torch.cat(pooled) if pooled else features.new_zeros((0, features.shape[1], *size))
    offset = 0.5 if aligned else 0.0
    outputs = []
    for image_index, image_boxes in enumerate(boxes):
        feature = features[image_index]
        for box in image_boxes:
            x0, y0, x1, y1 = (float(v) * spatial_scale - offset for v in box)
            roi_w, roi_h = x1 - x0, y1 - y0
            if not aligned:
                roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
            bin_h, bin_w = roi_h / size[0], roi_w / size[1]
            grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / size[0])
            grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / size[1])
            iy = (torch.arange(grid_h, dtype=features.dtype) + 0.5) / grid_h
            ix = (torch.arange(grid_w, dtype=features.dtype) + 0.5) / grid_w
            py = torch.arange(size[0], dtype=features.dtype)
            px = torch.arange(size[1], dtype=features.dtype)
            ys = y0 + (py[:, None] + iy[None, :]) * bin_h  # (ph, gh)
            xs = x0 + (px[:, None] + ix[None, :]) * bin_w  # (pw, gw)
            yy = ys[:, None, :, None].expand(size[0], size[1], grid_h, grid_w)
            xx = xs[None, :, None, :].expand(size[0], size[1], grid_h, grid_w)
            sampled = _bilinear(feature, yy, xx)  # (C, ph, pw, gh, gw)
            outputs.append(sampled.sum(dim=(-1, -2)) / max(grid_h * grid_w, 1))
    if not outputs:
        return features.new_zeros((0, features.shape[1], *size))
    return torch.stack(outputs)


def install_keras_hub_roi_align() -> None:
    """On the torch backend keras-hub pools exemplar boxes with ``torchvision.ops.roi_align``;
    where torchvision does not import (here), put :func:`roi_align` there, in the tests'
    torchvision stand-in (:func:`official_sam.install_torchvision_shim`). Tests only."""
    try:
        from torchvision.ops import roi_align as _real  # noqa: F401

        return
    except Exception:
        pass
    import sys

    from official_sam import install_torchvision_shim

    install_torchvision_shim()
    sys.modules["torchvision.ops"].roi_align = roi_align


def _install_roi_align() -> None:
    """Give transformers' SAM 3 module the stand-in as ``torchvision.ops.roi_align`` (tests only)."""
    from transformers.models.sam3 import modeling_sam3

    if not hasattr(modeling_sam3, "torchvision"):
        modeling_sam3.torchvision = types.SimpleNamespace(
            ops=types.SimpleNamespace(roi_align=roi_align)
        )


def tiny_clip_tokenizer():
    """A CLIP tokenizer over single bytes plus merges that make :data:`WORDS` one token each."""
    from transformers import CLIPTokenizer

    from napari_sam_keras.model.clip_tokenizer import _byte_encoder

    chars = list(_byte_encoder().values())  # CLIP's 256 byte characters
    tokens = chars + [c + "</w>" for c in chars]
    merges = []
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if " ".join(pair) not in merges:
                merges.append(" ".join(pair))
                tokens.append(pair[0] + pair[1])
            parts = [pair[0] + pair[1], *parts[2:]]
    vocab = {}
    for token in [*tokens, "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m.split(" ")) for m in merges],
        pad_token="<|endoftext|>",
    )


def tiny_sam3_config(vocab_size: int):
    """A tiny ``Sam3Config``: 112 px, hidden 32, 1-2 layers, 8 queries."""
    from transformers import CLIPTextConfig, Sam3Config
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    vit = Sam3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=14,
        window_size=4,
        global_attn_indexes=[1],
        pretrain_image_size=56,
    )
    vision = Sam3VisionConfig(
        backbone_config=vit.to_dict() | {"model_type": "sam3_vit_model"},
        fpn_hidden_size=32,
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
    )
    text = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        projection_dim=32,
        hidden_act="gelu",  # as the real SAM 3 (CLIP's default quick_gelu is not in Keras)
    )
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    return Sam3Config(
        vision_config=vision.to_dict(),
        text_config=text.to_dict() | {"model_type": "clip_text_model"},
        geometry_encoder_config=small | {"num_layers": 1},
        detr_encoder_config=small | {"num_layers": 1},
        detr_decoder_config=small | {"num_layers": 2, "num_queries": 8},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )


def save_tiny_sam3(folder: Path, seed: int = 0):
    """Save a tiny random transformers SAM 3 into ``folder``; return (model, tokenizer).

    transformers' ``Sam3ImageProcessor`` needs torchvision too, so the oracle is fed the
    pixel values and normalised boxes directly (:func:`oracle_outputs`).
    """
    import torch
    from transformers import Sam3Model

    _install_roi_align()
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    model = Sam3Model(tiny_sam3_config(len(tokenizer)))
    with torch.no_grad():  # random init leaves many zeros and ones: perturb everything
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.eval()
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def oracle_outputs(model, tokenizer, pixel_values, text, boxes=None, labels=None):
    """transformers' tokenizer and PyTorch forward: numpy outputs.

    ``pixel_values``: (1, S, S, 3) normalised, channels last (as our model gets them);
    ``boxes``: (N, 4) XYXY normalised to 0..1 of the image; ``labels``: 1 positive,
    0 negative (converted to centre-size as ``Sam3Processor`` does).
    """
    import torch

    _install_roi_align()
    tokens = tokenizer([text], padding="max_length", max_length=32, return_tensors="pt")
    kwargs = {
        "pixel_values": torch.from_numpy(np.ascontiguousarray(pixel_values.transpose(0, 3, 1, 2))),
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
    }
    if boxes is not None:
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        cxcywh = np.stack(
            [
                (b[:, 0] + b[:, 2]) / 2,
                (b[:, 1] + b[:, 3]) / 2,
                b[:, 2] - b[:, 0],
                b[:, 3] - b[:, 1],
            ],
            axis=-1,
        )
        kwargs["input_boxes"] = torch.from_numpy(cxcywh[None])
        kwargs["input_boxes_labels"] = torch.as_tensor(np.asarray(labels, np.int64)[None])
    with torch.no_grad():
        out = model(**kwargs)
    return {
        "input_ids": tokens["input_ids"].numpy(),
        "attention_mask": tokens["attention_mask"].numpy(),
        "pred_logits": out.pred_logits.numpy(),
        "presence_logits": out.presence_logits.numpy(),
        "pred_boxes": out.pred_boxes.numpy(),
        "pred_masks": out.pred_masks.numpy(),
        "semantic_seg": out.semantic_seg.numpy(),
    }
