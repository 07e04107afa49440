"""The image encoder (SAM's ViT or MobileSAM's TinyViT), compiled once per network."""

from __future__ import annotations

import numpy as np

from ..processing.images import pad_to_model_input, preprocess_shape, resize_longest_side
from ..runtime.compiled_call import CompiledCall
from .embedding import ImageEmbedding


class ImageEncoder:
    """RGB uint8 image -> :class:`ImageEmbedding`."""

    def __init__(self, network, jit_compile: bool = True) -> None:
        self.network = network
        self.config = network.config
        self.compiled = CompiledCall(network.image_encoder_model(), jit_compile=jit_compile)

    def embed(self, image_rgb: np.ndarray) -> ImageEmbedding:
        """Embed a full-size RGB uint8 image."""
        resized = resize_longest_side(image_rgb, self.config.image_size)
        return self.embed_resized(resized, image_rgb.shape[:2])

    def embed_resized(
        self, resized_rgb: np.ndarray, original_size: tuple[int, int]
    ) -> ImageEmbedding:
        """Embed an RGB uint8 image already resized so its longest side is the input size."""
        cfg = self.config
        h, w = (int(v) for v in original_size)
        input_size = preprocess_shape(h, w, cfg.image_size)
        if tuple(resized_rgb.shape[:2]) != input_size:
            raise ValueError(f"expected a {input_size} image, got {resized_rgb.shape[:2]}")
        batch = pad_to_model_input(resized_rgb, cfg.image_size, cfg.pixel_mean)
        features = self.compiled(batch)
        return ImageEmbedding(
            features=np.asarray(features, np.float32),
            original_size=(h, w),
            input_size=input_size,
            model_key=self.network.key,
        )
