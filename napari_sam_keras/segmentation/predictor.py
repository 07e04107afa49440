"""``SAMPredictor``: the official ``SamPredictor`` interface on Keras, numpy in and out.

A large image cut into tiles is :class:`~napari_sam_keras.TiledSAMPredictor`'s
(:mod:`.tiled_predictor`), a subclass with the same interface.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ImageError, PromptError
from ..model.as_network import as_network
from ..model.embedding import ImageEmbedding
from ..model.embedding_store import EmbeddingStore
from ..model.image_encoder import ImageEncoder
from ..model.prompt_path import DEFAULT_POINT_SLOTS, PromptPath
from ..processing.images import resized_rgb_uint8
from ..processing.mask_upscaling import upscale_logits
from ..processing.prompts import (
    check_boxes,
    check_mask_input,
    check_points,
    check_prompt_batch,
    to_input_frame,
)
from .embedding_source import (
    EmbeddingMemory,
    Embeddings,
    EmbeddingSource,
    image_key,
    split_embeddings,
)

MASK_THRESHOLD = 0.0

__all__ = ["MASK_THRESHOLD", "SAMPredictor", "as_network"]  # as_network: its former home


class SAMPredictor:
    """Compute an image embedding once, then predict masks for many prompts.

    Follows the official ``segment_anything.SamPredictor``: coordinates are
    (x, y) pixels of the image given to :meth:`set_image`; boxes are
    x0, y0, x1, y1; labels are 1 (positive) and 0 (negative).  The whole
    image is embedded, shrunk to the model's input; a large image cut into
    tiles needs :class:`~napari_sam_keras.TiledSAMPredictor`.

    Args:
        model: a :class:`SAMNetwork` or a keras-cv ``SegmentAnythingModel``.
        point_slots: points per prompt the compiled prompt path holds without
            recompiling (more points trigger one compilation per power of two).
        jit_compile: compile with XLA (jax, tensorflow); off is for debugging.
        warm_up: compile the prompt path in a background thread right away, so
            that it is ready when the first embedding is.
        embeddings: an :class:`~napari_sam_keras.EmbeddingStore` or its path,
            or an in-memory :class:`~napari_sam_keras.EmbeddingCache` (or a
            dict), as every ``embeddings=`` of the package accepts:
            :meth:`set_image` reads the image's embeddings from it instead of
            running the encoder, and puts there what it computes.  The image
            is found by its content (in a store, a plane of a stored stack is
            found too); a store made for other data or another model raises
            :class:`~napari_sam_keras.EmbeddingStoreMismatch`.
    """

    def __init__(
        self,
        model: Any,
        point_slots: int = DEFAULT_POINT_SLOTS,
        jit_compile: bool = True,
        warm_up: bool = True,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.network = as_network(model)
        self.config = self.network.config
        self.point_slots = point_slots
        self.jit_compile = jit_compile
        self.image_encoder: ImageEncoder = self.network.image_encoder(jit_compile)
        self.prompt_path: PromptPath = self.network.prompt_path(jit_compile)
        self.memory: EmbeddingMemory | None
        self.store: EmbeddingStore | None
        self.memory, self.store = split_embeddings(embeddings)
        if warm_up:
            self.prompt_path.start_warm_up()
        self._embedding: ImageEmbedding | None = None
        #: Where the current image's embeddings came from (a store or a cache), else None.
        self.embedding_source: EmbeddingSource | None = None

    # --- the image -------------------------------------------------------------------

    def set_image(
        self,
        image: np.ndarray,
        image_format: str = "RGB",
        contrast_limits: tuple[float, float] | None = None,
        tile_shape: int | tuple[int, int] | None = None,
        halo: int | tuple[int, int] | None = None,
    ) -> None:
        """Compute the embedding of ``image``: (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA.

        uint8 images are used as they are; other dtypes are mapped to 0..255
        from ``contrast_limits`` (default: the image's own min and max).

        With an embedding store (``embeddings=`` of the constructor), what the
        store holds is read, not computed.

        ``tile_shape`` and ``halo`` are :class:`~napari_sam_keras.TiledSAMPredictor`'s
        (the same call cuts the image into tiles there); here they raise
        :class:`~napari_sam_keras.ImageError`, as a store of tiles does.
        """
        tile_shape, halo = self._tiling(image_format, tile_shape, halo)
        if tile_shape is not None:
            raise ImageError(
                "SAMPredictor embeds the whole image; for tiles (tile_shape=, or a store made "
                "with tiles) use TiledSAMPredictor(model), whose set_image takes tile_shape= "
                "and halo=."
            )
        self.reset_image()
        if self.store is None and self.memory is None:
            # converted and resized channel by channel: memory stays near the resized image's
            resized = resized_rgb_uint8(image, self.config.image_size, contrast_limits)
            if image_format == "BGR":
                resized = np.ascontiguousarray(resized[..., ::-1])
            self._embedding = self.image_encoder.embed_resized(resized, np.shape(image)[:2])
            return
        self.embedding_source = self._embedding_source(image, contrast_limits, image_format)
        self._embedding = self.embedding_source.embedding(0)

    def _tiling(self, image_format: str, tile_shape, halo) -> tuple[Any, Any]:
        """The tiling :meth:`set_image` is asked for: as given, else the store's (checked)."""
        if image_format not in ("RGB", "BGR"):
            raise ImageError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}.")
        if tile_shape is None and halo is not None:
            raise ImageError("halo was given without tile_shape.")
        if tile_shape is None and self.store is not None and self.store.spec is not None:
            return self.store.spec.tile_shape, self.store.spec.halo
        return tile_shape, halo

    def _embedding_source(
        self, image, contrast_limits, image_format: str, tile_shape=None, halo=None
    ) -> EmbeddingSource:
        """The image's embeddings through this predictor's memory and store."""
        return EmbeddingSource(
            self.image_encoder,
            image,
            tile_shape,
            halo,
            contrast_limits,
            image_format,
            store=self.store,
            memory=self.memory,
            key=None
            if self.memory is None
            else image_key(image, contrast_limits, image_format, self.network),
        )

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Restore an embedding from :meth:`embedding_state` without recomputing it."""
        cfg = self.config
        e = cfg.embedding_size
        if embedding.features.shape != (1, e, e, cfg.prompt_embed_dim):
            raise ImageError(
                f"This embedding has shape {embedding.features.shape}, but the model makes "
                f"{(1, e, e, cfg.prompt_embed_dim)}: it was computed by another model."
            )
        if embedding.model_key and embedding.model_key != self.network.key:
            raise ImageError("This embedding was computed by another model; recompute it.")
        self.reset_image()
        self._embedding = embedding

    def embedding_state(self) -> ImageEmbedding:
        """The current image's embedding, for :meth:`set_embedding` or a cache."""
        return self._require_image()

    def get_image_embedding(self) -> np.ndarray:
        """The embedding as (1, C, h, w), laid out like the official predictor's."""
        return np.transpose(self._require_image().features, (0, 3, 1, 2))

    def reset_image(self) -> None:
        self._embedding = None
        self.embedding_source = None

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def original_size(self) -> tuple[int, int] | None:
        return None if self._embedding is None else self._embedding.original_size

    @property
    def input_size(self) -> tuple[int, int] | None:
        """The resized input's (H, W); None when no image is set (or the image is tiled)."""
        return None if self._embedding is None else self._embedding.input_size

    def _require_image(self) -> ImageEmbedding:
        if self._embedding is None:
            raise ImageError("No image is set: call set_image(image) before predicting.")
        return self._embedding

    # --- prompts -> masks ------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for one object.

        Returns ``(masks, iou_predictions, low_res_logits)`` shaped (C, H, W),
        (C,), (C, 256, 256) with C = 3 when ``multimask_output`` else 1.
        ``masks`` are boolean unless ``return_logits``.
        """
        emb, (points, labels, box, mask_input), place = self._prompt_for(
            point_coords, point_labels, box, mask_input
        )
        masks, scores, low_res = self._decode(
            emb, [points], [labels], [box], [mask_input], multimask_output, return_logits
        )
        return place(masks)[0], scores[0], low_res[0]

    def predict_best(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> tuple[np.ndarray, float]:
        """The highest-scoring mask of :meth:`predict` as (H, W) bool, and its predicted IoU.

        Only that mask is upscaled to the image size (what an interactive tool
        shows), not all three.
        """
        emb, (points, labels, box, mask_input), place = self._prompt_for(
            point_coords, point_labels, box, mask_input
        )
        masks, scores, _ = self._decode(
            emb, [points], [labels], [box], [mask_input], multimask_output, False, best_only=True
        )
        return place(masks)[0, 0], float(scores[0, 0])

    def _prompt_for(self, point_coords, point_labels, box, mask_input):
        """(the embedding that answers one object's prompt, the prompt checked and in its
        input frame, ``masks -> masks at the image's size``).  The hook a tiled predictor
        overrides to answer from a tile."""
        emb = self._require_image()
        prompt = self._check_prompt(emb, point_coords, point_labels, box, mask_input)
        return emb, prompt, _as_they_are

    def _check_prompt(self, emb, point_coords, point_labels, box, mask_input):
        """One object's prompt, validated and in ``emb``'s input frame."""
        if point_coords is None and point_labels is not None:
            raise PromptError("point_labels were given without point_coords.")
        if point_coords is None and box is None and mask_input is None:
            raise PromptError("No prompt: give points, a box or a mask input.")
        points = labels = None
        if point_coords is not None:
            points, labels = check_points(point_coords, point_labels, emb.original_size)
            points = to_input_frame(points, emb.original_size, emb.input_size)
        if box is not None:
            box = to_input_frame(
                check_boxes(box, emb.original_size).reshape(2, 2), emb.original_size, emb.input_size
            )
        if mask_input is not None:
            mask_input = check_mask_input(mask_input, self.config.low_res_mask_size)
        return points, labels, box, mask_input

    def predict_batch(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict B objects at once, like the official ``predict_torch``.

        Coordinates are in the original image frame (unlike ``predict_torch``):
        points (B, N, 2) with labels (B, N), boxes (B, 4), mask_input
        (B, 1, 256, 256).  Returns masks (B, C, H, W), IoU (B, C) and low-res
        logits (B, C, 256, 256).
        """
        emb = self._require_image()
        if mask_input is not None:
            mask_input = check_mask_input(mask_input, self.config.low_res_mask_size, batched=True)
        point_coords, point_labels, boxes, batch = check_prompt_batch(
            point_coords, point_labels, boxes, mask_input, emb.original_size
        )
        if point_coords is not None:
            point_coords = to_input_frame(point_coords, emb.original_size, emb.input_size)
        if boxes is not None:
            boxes = to_input_frame(boxes.reshape(-1, 2, 2), emb.original_size, emb.input_size)

        def each(arr):
            return [None] * batch if arr is None else list(arr)

        return self._decode(
            emb,
            each(point_coords),
            each(point_labels),
            each(boxes),
            each(mask_input),
            multimask_output,
            return_logits,
        )

    def predict_input_frame(
        self,
        point_coords: np.ndarray | None,
        point_labels: np.ndarray | None,
        multimask_output: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Low-res logits and IoU for (B, N, 2) points already in the input frame.

        The automatic mask generator's fast path: no validation, no upscaling,
        no mask inputs, and no more point slots than the prompts need.
        """
        emb = self._require_image()
        n = len(point_coords)
        low_res, iou = self.prompt_path.run(
            emb.features,
            list(point_coords),
            list(point_labels),
            [None] * n,
            None,
            min_point_slots=1,
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return low_res[:, sl], iou[:, sl]

    def _decode(
        self, emb, points, labels, boxes, masks, multimask_output, return_logits, best_only=False
    ):
        low_res, iou = self.prompt_path.run(
            emb.features, points, labels, boxes, masks, min_point_slots=self.point_slots
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        low_res, iou = low_res[:, sl], iou[:, sl]
        if best_only:  # per prompt, the highest predicted IoU
            best = np.argmax(iou, axis=1)[:, None]
            iou = np.take_along_axis(iou, best, axis=1)
            low_res = np.take_along_axis(low_res, best[:, :, None, None], axis=1)
        logits = upscale_logits(low_res, self.config.image_size, emb.input_size, emb.original_size)
        out = logits if return_logits else logits > MASK_THRESHOLD
        return out, iou, low_res


def _as_they_are(masks: np.ndarray) -> np.ndarray:
    return masks
