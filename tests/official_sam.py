"""The official ``segment-anything`` package as a test oracle.

It imports a few torchvision functions; torchvision from the registry does
not import beside the CPU torch used here, so :func:`install_torchvision_shim`
puts a small, faithful implementation of exactly those functions into
``sys.modules`` first (greedy NMS, PIL bilinear resize).
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from functools import partial

import numpy as np


def install_torchvision_shim() -> None:
    try:
        import torchvision  # noqa: F401
        from torchvision.ops.boxes import batched_nms

        return
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    try:  # transformers (the SAM 3 oracle) must keep seeing no torchvision: ask it first
        from transformers.utils.import_utils import is_torchvision_available

        is_torchvision_available()  # cached from now on
    except ImportError:
        pass

    import torch
    from PIL import Image

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def box_iou(a, b):
        area_a, area_b = box_area(a), box_area(b)
        lt = torch.max(a[:, None, :2], b[None, :, :2])
        rb = torch.min(a[:, None, 2:], b[None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        return inter / (area_a[:, None] + area_b[None, :] - inter)

    def nms(boxes, scores, iou_threshold):
        order = torch.argsort(scores, descending=True, stable=True)
        keep = []
        suppressed = torch.zeros(len(order), dtype=torch.bool)
        ious = box_iou(boxes[order], boxes[order])
        for i in range(len(order)):
            if suppressed[i]:
                continue
            keep.append(order[i].item())
            suppressed |= ious[i] > iou_threshold
        return torch.as_tensor(keep, dtype=torch.int64)

    def batched_nms(boxes, scores, idxs, iou_threshold):
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64)
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        return nms(boxes + offsets[:, None], scores, iou_threshold)

    def to_pil_image(array):
        return Image.fromarray(np.asarray(array))

    def resize(img, size):
        h, w = size
        return img.resize((w, h), Image.BILINEAR)

    root = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms, boxes.box_area, boxes.nms = batched_nms, box_area, nms
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.resize, functional.to_pil_image = resize, to_pil_image
    root.ops, ops.boxes, root.transforms, transforms.functional = ops, boxes, transforms, functional
    shims = {
        "torchvision": root,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }
    for name, module in shims.items():
        # a spec, so that importlib.util.find_spec (transformers asks it) does not raise;
        # with no torchvision distribution installed, transformers still sees none
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules.update(shims)


def build_official_sam(config, seed: int = 0):
    """An official ``Sam`` of the given :class:`SAMConfig` with random (non-trivial) weights."""
    install_torchvision_shim()
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    e = config.embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=config.image_size,
            mlp_ratio=config.encoder_mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.encoder_global_attn_indexes,
            window_size=config.window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(e, e),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=list(config.pixel_mean),
        pixel_std=list(config.pixel_std),
    )
    # The official init leaves position tables at zero and norms at one:
    # perturb every tensor so that a wrong mapping cannot go unnoticed.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith(("norm1.weight", "norm2.weight", "norm3.weight", "norm4.weight")) or (
                p.ndim == 1 and "weight" in name
            ):
                p.copy_(1.0 + 0.1 * noise)
            elif "rel_pos" in name or "pos_embed" in name:
                p.copy_(0.05 * noise)
            elif p.ndim == 1:
                p.copy_(0.02 * noise)
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(noise / np.sqrt(fan_in))
    sam.eval()
    return sam
