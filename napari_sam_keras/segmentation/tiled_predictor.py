"""``TiledSAMPredictor``: :class:`SAMPredictor` for large images cut into tiles.

As micro-sam keeps tiling beside the official predictor, the tiles live in a
subclass: a prompt is answered by the tile holding its centroid (with a halo of
its neighbours), and the mask is pasted back at the image's full size.  Without
``tile_shape`` (and without a store made with tiles) a ``TiledSAMPredictor``
is a :class:`SAMPredictor`: the whole image is embedded and answered the same
way, bit for bit, so one predictor serves both (as the napari widgets' does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ImageError, PromptError
from ..processing.prompts import check_boxes, check_points, check_prompt_batch
from .embedding_source import EmbeddingSource
from .predictor import SAMPredictor
from .tiling import Tile, centroid_points, paste, prompts_into_tile

__all__ = ["TiledSAMPredictor", "tiles_of"]


class TiledSAMPredictor(SAMPredictor):
    """A :class:`SAMPredictor` that can also cut a large image into tiles.

    Takes the arguments of :class:`SAMPredictor`.  :meth:`set_image` with
    ``tile_shape`` embeds tile by tile; every prediction method then answers
    from the tile holding the prompts' centroid, with masks at the image's
    full size (``low_res_logits`` and a ``mask_input`` in that tile's frame).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tiles: EmbeddingSource | None = None

    @classmethod
    def of(cls, predictor: SAMPredictor) -> TiledSAMPredictor:
        """``predictor`` when it tiles, else a tiled predictor sharing its network, compiled
        parts, in-memory cache and store (``predictor`` itself is left as it is)."""
        if isinstance(predictor, cls):
            return predictor
        shared = predictor.store if predictor.memory is None else predictor.memory
        return cls(
            predictor.network,
            point_slots=predictor.point_slots,
            jit_compile=predictor.jit_compile,
            warm_up=False,
            embeddings=shared,
        )

    # --- the image -------------------------------------------------------------------

    def set_image(
        self,
        image: np.ndarray,
        image_format: str = "RGB",
        contrast_limits: tuple[float, float] | None = None,
        tile_shape: int | tuple[int, int] | None = None,
        halo: int | tuple[int, int] | None = None,
    ) -> None:
        """:meth:`SAMPredictor.set_image`, or with ``tile_shape`` the image cut into tiles.

        With ``tile_shape`` (h, w) (an int means square), the image is cut into
        tiles, each embedded with ``halo`` (rows, columns; default 0) pixels of
        its neighbours (see :mod:`napari_sam_keras.segmentation.tiling`).  A
        tile is embedded when a prompt first needs it (:meth:`embed_tiles`
        embeds all now); the image may be lazy (dask, zarr, memory map): it is
        read one tile at a time.  A prompt is answered by the tile holding its
        centroid, and masks come back at the image's full size.  Objects
        larger than a tile plus its halo are cut at the tile's edge.

        With an embedding store (``embeddings=`` of the constructor), what the
        store holds is read, not computed; when ``tile_shape`` is None, the
        store's tiling is used.
        """
        tile_shape, halo = self._tiling(image_format, tile_shape, halo)
        if tile_shape is None:
            super().set_image(image, image_format, contrast_limits)
            return
        self.reset_image()
        self.set_tiles(
            self._embedding_source(image, contrast_limits, image_format, tile_shape, halo)
        )

    def set_tiles(self, tiles: EmbeddingSource) -> None:
        """Use a tiled image's embeddings prepared elsewhere (as :attr:`tiles` returns them)."""
        if tiles.encoder.network is not self.network:
            raise ImageError("These tile embeddings belong to another model.")
        self.reset_image()
        self._tiles = self.embedding_source = tiles

    @property
    def tiles(self) -> EmbeddingSource | None:
        """The tiled image's embeddings (its ``grid`` holds the tiles); None when untiled."""
        return self._tiles

    def embed_tiles(self, progress=None) -> None:
        """Embed every tile of a tiled image now (``progress(done, total)`` after each)."""
        if self._tiles is None:
            raise ImageError("embed_tiles needs an image set with a tile_shape.")
        total = len(self._tiles.grid)
        for i in range(total):
            self._tiles.embedding(i)
            if progress is not None:
                progress(i + 1, total)

    def reset_image(self) -> None:
        super().reset_image()
        self._tiles = None

    @property
    def is_image_set(self) -> bool:
        return self._tiles is not None or super().is_image_set

    @property
    def original_size(self) -> tuple[int, int] | None:
        return self._tiles.shape if self._tiles is not None else super().original_size

    def _require_image(self):
        if self._tiles is not None:
            raise ImageError(
                "The image is tiled: its embeddings are per tile (predictor.tiles.embedding(i))."
            )
        return super()._require_image()

    # --- prompts -> masks ------------------------------------------------------------

    def _prompt_for(self, point_coords, point_labels, box, mask_input):
        """On a tiled image: the tile holding the prompt's centroid answers, and its masks
        are pasted at the image's size (outside the tile False, logits the lowest float);
        ``low_res_logits`` (and a ``mask_input``) are in that tile's frame."""
        tiles = self._tiles
        if tiles is None:
            return super()._prompt_for(point_coords, point_labels, box, mask_input)
        if point_coords is None and box is None:
            raise PromptError(
                "A tiled image needs points or a box to choose the tile (a mask input alone "
                "does not say where the object is)."
            )
        if point_coords is not None:
            point_coords, point_labels = check_points(point_coords, point_labels, tiles.shape)
        if box is not None:
            box = check_boxes(box, tiles.shape)
        tile = tiles.grid.tile_for_prompt(centroid_points(point_coords, point_labels), box)
        point_coords, point_labels, box = prompts_into_tile(tile, point_coords, point_labels, box)
        emb = tiles.embedding(tile.index)
        prompt = self._check_prompt(emb, point_coords, point_labels, box, mask_input)
        return emb, prompt, lambda masks: paste(masks, tile, tiles.shape)

    def predict_batch(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`SAMPredictor.predict_batch`; on a tiled image the prompts are grouped by
        the tile answering them (``mask_input`` is not supported there)."""
        if self._tiles is None:
            return super().predict_batch(
                point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
            )
        tiles = self._tiles
        if mask_input is not None:
            raise PromptError("mask_input is not supported by predict_batch on a tiled image.")
        point_coords, point_labels, boxes, batch = check_prompt_batch(
            point_coords, point_labels, boxes, None, tiles.shape, mask_inputs=False
        )
        groups: dict[int, list[tuple[int, Any, Any, Any]]] = {}
        tile_of: dict[int, Tile] = {}
        for i in range(batch):
            pts = None if point_coords is None else point_coords[i]
            lab = None if point_labels is None else point_labels[i]
            box = None if boxes is None else boxes[i]
            tile = tiles.grid.tile_for_prompt(centroid_points(pts, lab), box)
            pts, lab, box = prompts_into_tile(tile, pts, lab, box)
            groups.setdefault(tile.index, []).append((i, pts, lab, box))
            tile_of[tile.index] = tile
        masks = scores = low_res = None
        for index, members in groups.items():
            emb = tiles.embedding(index)
            pts_l, lab_l, box_l = [], [], []
            for _, pts, lab, box in members:
                pts, lab, box, _ = self._check_prompt(emb, pts, lab, box, None)
                pts_l.append(pts)
                lab_l.append(lab)
                box_l.append(box)
            m, s, lr = self._decode(
                emb, pts_l, lab_l, box_l, [None] * len(members), multimask_output, return_logits
            )
            m = paste(m, tile_of[index], tiles.shape)
            if masks is None:
                masks = np.empty((batch, *m.shape[1:]), m.dtype)
                scores = np.empty((batch, *s.shape[1:]), s.dtype)
                low_res = np.empty((batch, *lr.shape[1:]), lr.dtype)
            rows = [i for i, *_ in members]
            masks[rows], scores[rows], low_res[rows] = m, s, lr
        return masks, scores, low_res


def tiles_of(predictor: SAMPredictor) -> EmbeddingSource | None:
    """The tiled image ``predictor`` holds (its :attr:`TiledSAMPredictor.tiles`), else None."""
    return predictor.tiles if isinstance(predictor, TiledSAMPredictor) else None
