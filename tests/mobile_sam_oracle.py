"""MobileSAM (``mobilesam-mirror``, module ``mobile_sam``) as a test oracle.

Its TinyViT module imports four names from ``timm``, which in turn needs a
torchvision matching the pinned CPU torch.  :func:`install_timm_shim` puts a
small stand-in for exactly those names into ``sys.modules`` (inference only:
MobileSAM's vit_t has no stochastic depth, so ``DropPath`` is never built),
and the torchvision functions come from :mod:`official_sam`'s shim.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from official_sam import install_torchvision_shim


def install_timm_shim() -> None:
    """Provide ``timm.models.layers`` (DropPath, to_2tuple, trunc_normal_) and
    ``timm.models.registry.register_model`` unless a working timm is installed."""
    try:
        from timm.models.layers import DropPath, to_2tuple, trunc_normal_  # noqa: F401
        from timm.models.registry import register_model

        return
    except Exception:
        for name in [m for m in sys.modules if m == "timm" or m.startswith("timm.")]:
            del sys.modules[name]

    import torch

    class DropPath(torch.nn.Module):
        """Stochastic depth per sample (identity in eval mode or at drop_prob 0)."""

        def __init__(self, drop_prob: float | None = None) -> None:
            super().__init__()
            self.drop_prob = drop_prob or 0.0

        def forward(self, x):
            if not self.training or self.drop_prob == 0.0:
                return x
            keep = 1.0 - self.drop_prob
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask / keep

    def to_2tuple(value):
        if isinstance(value, Iterable) and not isinstance(value, str):
            return tuple(value)
        return (value, value)

    def register_model(fn):
        return fn

    root = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath, layers.to_2tuple = DropPath, to_2tuple
    layers.trunc_normal_ = torch.nn.init.trunc_normal_
    registry.register_model = register_model
    root.models, models.layers, models.registry = models, layers, registry
    sys.modules.update(
        {
            "timm": root,
            "timm.models": models,
            "timm.models.layers": layers,
            "timm.models.registry": registry,
        }
    )


def import_mobile_sam():
    """The ``mobile_sam`` package, with the stand-ins it needs installed first."""
    install_torchvision_shim()
    install_timm_shim()
    import mobile_sam

    return mobile_sam


def build_mobile_sam(seed: int = 0):
    """MobileSAM's vit_t with random, non-trivial weights, in eval mode.

    Every parameter and BatchNorm statistic is perturbed (the official init
    leaves norms at one, biases and attention-bias tables at zero), so a
    wrong mapping cannot go unnoticed.  ``eval()`` comes after the weights are
    set: MobileSAM caches each attention's bias table (``ab``) when it switches
    to eval mode.
    """
    import torch

    mobile_sam = import_mobile_sam()
    torch.manual_seed(seed)
    sam = mobile_sam.sam_model_registry["vit_t"]()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1 and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif "attention_biases" in name:
                p.copy_(0.5 * noise)
            elif p.ndim == 1:
                p.copy_(0.02 * noise)
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(noise / np.sqrt(fan_in))
        for name, buf in sam.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
    sam.eval()
    return sam


def save_mobile_sam_checkpoint(path: Path, seed: int = 0, micro_sam: bool = False):
    """Save a random MobileSAM as ``path``: ``mobile_sam.pt``'s layout (a plain state
    dict), or micro-sam's (``{"model_state": {"sam." + key: ...}}``).  Returns the model."""
    import torch

    sam = build_mobile_sam(seed)
    state = sam.state_dict()
    if micro_sam:
        state = {"model_state": {f"sam.{k}": v for k, v in state.items()}, "epoch": 10}
    torch.save(state, path)
    return sam
