"""``InstanceSegmenter``: automatic instance segmentation with micro-sam's decoder ("AIS").

One image embedding (the same one the interactive predictor uses) goes
through the instance decoder, which predicts three maps at the model's input
resolution: foreground probability, distance to the object centre and
distance to the object boundary.  They are cropped to the image's part of
the padded input and resized to the image size, as micro-sam's
``postprocess_masks`` does; a seeded watershed turns them into labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from ..errors import ImageError, SAMError
from ..model.as_network import as_network
from ..model.embedding import ImageEmbedding
from ..processing.instance_watershed import (
    WatershedSettings,
    instance_labels,
    settings_for_model,
)
from ..processing.mask_upscaling import upscale_logits
from ..processing.prompt_rules import check_watershed_settings
from .embedding_source import Embeddings
from .predictor import SAMPredictor
from .tiling import TiledImage, TileGrid


class InstanceSegmenter:
    """Segment every object of an image with the model's instance decoder.

    Args:
        model: a :class:`~napari_sam_keras.SAMNetwork` loaded with a decoder
            (a micro-sam checkpoint such as ``vit_b_lm``; see
            :func:`~napari_sam_keras.load_model`).
        predictor: a :class:`~napari_sam_keras.SAMPredictor` of the same
            network whose embeddings to reuse (default: a new one).
        settings: the watershed thresholds; default micro-sam's for the model
            when its file name says which it is (``vit_b_lm`` ...), else
            micro-sam's general defaults.
        jit_compile: compile with XLA (jax, tensorflow).
        embeddings: where a new predictor finds and keeps the images' embeddings: an
            :class:`~napari_sam_keras.EmbeddingCache` (or a dict), an
            :class:`~napari_sam_keras.EmbeddingStore` or its path, as every
            ``embeddings=`` of the package (with ``predictor``: that predictor's).
            Tiled segmentation embeds its tiles without them.

    Raises:
        SAMError: the model has no instance decoder.

    Example::

        net = load_model("vit_b_lm.pt")          # with vit_b_lm_decoder.pt beside it
        labels = InstanceSegmenter(net).segment(image)
    """

    def __init__(
        self,
        model: Any,
        predictor: SAMPredictor | None = None,
        settings: WatershedSettings | None = None,
        jit_compile: bool = True,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.network = as_network(model)
        decoder = getattr(self.network, "instance_decoder", None)
        if decoder is None:
            raise SAMError(
                f"The model {self.network.name!r} has no instance-segmentation decoder. Load a "
                "micro-sam model that has one (e.g. vit_b_lm.pt with vit_b_lm_decoder.pt beside "
                "it, or load_model(path, decoder='..._decoder.pt')), or use the automatic mask "
                "generator instead."
            )
        if decoder.config.embed_dim != self.network.config.prompt_embed_dim:
            raise SAMError(
                f"The instance decoder reads {decoder.config.embed_dim}-channel embeddings, but "
                f"this SAM makes {self.network.config.prompt_embed_dim}-channel ones: the decoder "
                "belongs to another model."
            )
        self.decoder = decoder
        if predictor is not None and predictor.network is not self.network:
            raise SAMError("The predictor belongs to another network than the segmenter.")
        if predictor is not None and embeddings is not None:
            raise SAMError("Give embeddings to the predictor, not beside it.")
        self.predictor = predictor or SAMPredictor(
            self.network, jit_compile=jit_compile, warm_up=False, embeddings=embeddings
        )
        if settings is not None:
            check_watershed_settings(asdict(settings))
        self.settings = settings or settings_for_model(self.network.name)
        self._compiled = decoder.runner(jit_compile)

    def _embedding(self, image: np.ndarray | ImageEmbedding | None, contrast_limits):
        if isinstance(image, ImageEmbedding):
            self.predictor.set_embedding(image)
        elif image is not None:
            self.predictor.set_image(image, contrast_limits=contrast_limits)
        return self.predictor.embedding_state()

    def predict_maps(
        self,
        image: np.ndarray | ImageEmbedding | None = None,
        contrast_limits: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """The decoder's maps at the image's size: float32 (3, H, W) in [0, 1].

        Channel 0 is the foreground probability, 1 the distance to the object
        centre, 2 the (inverted) distance to the object boundary; both
        distances are 0 inside objects' cores and 1 at boundaries and in the
        background.  ``image`` is a 2D grayscale/RGB image (embedded here), an
        :class:`~napari_sam_keras.ImageEmbedding` of this model, or ``None``
        for the predictor's current image.
        """
        emb = self._embedding(image, contrast_limits)
        raw = self._compiled(np.asarray(emb.features, np.float32))  # (1, S, S, 3)
        maps = np.transpose(np.asarray(raw[0], np.float32), (2, 0, 1))
        out = upscale_logits(
            maps, self.network.config.image_size, emb.input_size, emb.original_size
        )
        return np.ascontiguousarray(out, dtype=np.float32)

    def segment(
        self,
        image: np.ndarray | ImageEmbedding | None = None,
        contrast_limits: tuple[float, float] | None = None,
        tile_shape: int | tuple[int, int] | None = None,
        halo: int | tuple[int, int] | None = None,
        **thresholds: float,
    ) -> np.ndarray:
        """Instance labels of the image: int32 (H, W), 0 background, objects 1..N.

        ``thresholds`` override :attr:`settings` for this call:
        ``center_distance_threshold``, ``boundary_distance_threshold``,
        ``foreground_threshold``, ``foreground_smoothing``,
        ``distance_smoothing``, ``min_size``.  With ``tile_shape`` (and
        ``halo``) a large image is cut into tiles, each embedded with its halo
        and decoded; only the inner block of each tile goes into the
        full-size maps, and one watershed over them gives the labels, so an
        object on a tile border is one object.
        """
        check_watershed_settings(thresholds)  # the core rule: before any work
        settings = self.settings.updated(**thresholds)
        if tile_shape is None:
            if halo is not None:
                raise ImageError("halo was given without tile_shape.")
            return instance_labels(self.predict_maps(image, contrast_limits), settings)
        if image is None or isinstance(image, ImageEmbedding):
            raise ImageError("Tiled segmentation needs the image itself, not an embedding.")
        return instance_labels(
            self.predict_tiled_maps(image, tile_shape, halo, contrast_limits), settings
        )

    def predict_tiled_maps(
        self,
        image: np.ndarray,
        tile_shape: int | tuple[int, int],
        halo: int | tuple[int, int] | None = None,
        contrast_limits: tuple[float, float] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """:meth:`predict_maps` of a large image, tile by tile: float32 (3, H, W).

        Each tile is read (lazily, for dask/zarr arrays), converted like the
        whole image, embedded with its halo and decoded; the inner block of its
        maps is written into the full-size maps.
        """
        shape = tuple(int(s) for s in np.shape(image)[:2])
        grid = TileGrid(shape, tile_shape, halo)
        tiled = TiledImage(image, grid, contrast_limits)
        maps = np.zeros((3, *shape), np.float32)
        for done, tile in enumerate(grid):
            tile_maps = self.predict_maps(tiled.rgb(tile))
            y0, y1, x0, x1 = tile.inner
            oy, ox = tile.offset
            maps[:, y0:y1, x0:x1] = tile_maps[:, y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            if progress is not None:
                progress(done + 1, len(grid))
        return maps
