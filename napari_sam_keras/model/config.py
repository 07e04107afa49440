"""Architecture of a SAM network, independent of where its weights come from."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..errors import SAMError

TUPLE_FIELDS = (
    "encoder_global_attn_indexes",
    "pixel_mean",
    "pixel_std",
    "tiny_vit_embed_dims",
    "tiny_vit_depths",
    "tiny_vit_num_heads",
    "tiny_vit_window_sizes",
)


@dataclass(frozen=True)
class SAMConfig:
    """Every number that fixes the shape of a SAM network.

    The defaults are the official ViT-B model.  Tiny test models (random
    weights) are made by shrinking the encoder, e.g.::

        SAMConfig(image_size=256, encoder_embed_dim=32, encoder_depth=2,
                  encoder_num_heads=2, encoder_global_attn_indexes=(1,),
                  prompt_embed_dim=32, decoder_mlp_dim=64, iou_head_hidden_dim=32)

    ``encoder`` picks the image encoder: ``"vit"`` (SAM's ViT, the ``encoder_*``
    and ``window_size`` fields) or ``"tiny_vit"`` (MobileSAM's TinyViT, the
    ``tiny_vit_*`` fields; four stages, the first convolutional, an overall
    stride of 16).  The fields of the other encoder are ignored.
    """

    image_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    encoder_mlp_ratio: float = 4.0
    window_size: int = 14
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = field(default=(123.675, 116.28, 103.53))
    pixel_std: tuple[float, float, float] = field(default=(58.395, 57.12, 57.375))
    encoder: str = "vit"
    tiny_vit_embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    tiny_vit_depths: tuple[int, ...] = (2, 2, 6, 2)
    tiny_vit_num_heads: tuple[int, ...] = (2, 4, 5, 10)
    tiny_vit_window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    tiny_vit_mlp_ratio: float = 4.0
    tiny_vit_mbconv_expand_ratio: float = 4.0
    tiny_vit_local_conv_size: int = 3

    def __post_init__(self) -> None:
        for name in TUPLE_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.image_size % self.patch_size:
            raise SAMError("image_size must be a multiple of patch_size")
        from .encoder_families import encoder_family

        encoder_family(self.encoder).check_config(self)  # SAMError for an unknown one
        if self.prompt_embed_dim % (2 * self.decoder_num_heads):
            raise SAMError("prompt_embed_dim must be divisible by 2 * decoder_num_heads")

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    @property
    def low_res_mask_size(self) -> int:
        """Side of the low-resolution mask logits (256 for the official models)."""
        return 4 * self.embedding_size

    @property
    def encoder_mlp_dim(self) -> int:
        return int(self.encoder_embed_dim * self.encoder_mlp_ratio)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> SAMConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise SAMError(f"Unknown SAM config keys: {sorted(unknown)}")
        return cls(**values)


#: The official architectures.  Preset names follow keras-cv.
VIT_B = SAMConfig()
VIT_L = SAMConfig(
    encoder_embed_dim=1024,
    encoder_depth=24,
    encoder_num_heads=16,
    encoder_global_attn_indexes=(5, 11, 17, 23),
)
VIT_H = SAMConfig(
    encoder_embed_dim=1280,
    encoder_depth=32,
    encoder_num_heads=16,
    encoder_global_attn_indexes=(7, 15, 23, 31),
)

#: MobileSAM: TinyViT-5M image encoder, SAM's prompt encoder and mask decoder.
VIT_T = SAMConfig(encoder="tiny_vit")

ARCHITECTURES: dict[str, SAMConfig] = {
    "vit_t": VIT_T,
    "vit_b": VIT_B,
    "vit_l": VIT_L,
    "vit_h": VIT_H,
}

#: keras-cv / keras-hub preset name -> official architecture.
PRESETS: dict[str, str] = {
    "sam_base_sa1b": "vit_b",
    "sam_large_sa1b": "vit_l",
    "sam_huge_sa1b": "vit_h",
}

#: The model used when none is named (``--model``, the widgets' model field).
DEFAULT_MODEL = "sam_base_sa1b"
#: Environment variable naming the model to use instead of :data:`DEFAULT_MODEL`.
MODEL_ENV_VAR = "NAPARI_SAM_KERAS_MODEL"
