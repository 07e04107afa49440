"""The image encoder (ViT backbone), compiled once per network."""

from __future__ import annotations

import numpy as np

from ..processing.images import model_input, preprocess_shape
from ..runtime.compiled_call import CompiledCall
from .embedding import ImageEmbedding


class ImageEncoder:
    """RGB uint8 image -> :class:`ImageEmbedding`."""

    def __init__(self, network, jit_compile: bool = True) -> None:
        from ..keras_layers.vit_encoder import backbone_forward

        self.network = network
        self.config = network.config
        self.compiled = CompiledCall(
            backbone_forward(network.model.backbone, self.config), jit_compile=jit_compile
        )

    def embed(self, image_rgb: np.ndarray) -> ImageEmbedding:
        cfg = self.config
        batch = model_input(image_rgb, cfg.image_size, cfg.pixel_mean)
        features = self.compiled(batch)
        h, w = image_rgb.shape[:2]
        return ImageEmbedding(
            features=np.asarray(features, np.float32),
            original_size=(int(h), int(w)),
            input_size=preprocess_shape(h, w, cfg.image_size),
            model_key=self.network.key,
        )
