"""Helpers shared by the tests: tiny SAM architectures and official-format checkpoints."""

from __future__ import annotations

from pathlib import Path

from napari_sam_keras.model.config import SAMConfig

#: A tiny SAM: 2 encoder blocks (1 global), 256 px input, 32-dim prompts.
TINY = SAMConfig(
    image_size=256,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)

#: A larger one with several global blocks and windows that need padding.
SEVERAL_GLOBAL = SAMConfig(
    image_size=512,
    encoder_embed_dim=48,
    encoder_depth=4,
    encoder_num_heads=3,
    encoder_global_attn_indexes=(1, 3),
    prompt_embed_dim=64,
    decoder_mlp_dim=128,
    iou_head_hidden_dim=64,
)


def save_official_checkpoint(config: SAMConfig, path: Path, seed: int = 0):
    """Save a random official SAM of ``config`` as ``path`` (.pth); return the torch model."""
    import torch
    from official_sam import build_official_sam

    sam = build_official_sam(config, seed=seed)
    torch.save(sam.state_dict(), path)
    return sam
