"""Segment everything: SAM prompted with a grid of points, like the official generator.

:class:`SAMAutomaticMaskGenerator` follows ``segment_anything.SamAutomaticMaskGenerator``
step by step (same parameters, same filters in the same order, same records),
so that with the same weights it returns the same masks.  What differs is how
the work is done:

* the low-resolution logits of a mask are upscaled only where they can
  matter: bilinear upscaling never leaves the range of the logits it mixes,
  so output pixels whose low-resolution neighbours are all below the lowest
  threshold stay below it.  Only the rectangle around the mask's possible
  pixels is computed (two small matrix products), and only for masks that
  pass the predicted-IoU filter (which does not depend on the upscaled mask);
* masks are kept cut to their bounding boxes rather than as run-length codes;
* small holes and islands are removed with scikit-image on the mask's box
  grown by one pixel (not the whole image), with the same result as the
  official OpenCV code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import ImageError, SAMError
from ..model.as_network import as_network
from ..model.embedding import ImageEmbedding
from ..model.embedding_store import EmbeddingStore
from ..processing import masks as mu
from ..processing.images import to_rgb_uint8
from ..processing.mask_upscaling import upscale_matrices
from ..processing.prompts import to_input_frame
from .embedding_source import (
    EmbeddingMemory,
    Embeddings,
    EmbeddingSource,
    image_key,
    split_embeddings,
)
from .generator_settings import DEFAULTS, check_generator_options
from .predictor import MASK_THRESHOLD, SAMPredictor
from .tiled_predictor import tiles_of
from .tiling import as_pair

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

#: ``progress(done, total)``: called with the number of point batches done.
ProgressCallback = Callable[[int, int], Any]


@dataclass
class _Masks:
    """Masks and their statistics, one row each.  A mask is kept as ``crops[i]``,
    its bounding box cut out of the image; the box's top-left corner is
    ``boxes[i, :2]`` (the empty mask is a 1x1 False crop with box 0, 0, 0, 0)."""

    crops: list[np.ndarray]
    boxes: np.ndarray  # (K, 4) int64 XYXY, inclusive
    iou_preds: np.ndarray  # (K,) float32
    stability: np.ndarray  # (K,) float32
    points: np.ndarray  # (K, 2) float64 xy
    crop_boxes: np.ndarray  # (K, 4) int64 XYXY, exclusive end

    @classmethod
    def empty(cls) -> _Masks:
        return cls(
            [],
            np.zeros((0, 4), np.int64),
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, 2), np.float64),
            np.zeros((0, 4), np.int64),
        )

    def __len__(self) -> int:
        return len(self.crops)

    def take(self, index: np.ndarray) -> _Masks:
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return _Masks(
            [self.crops[i] for i in index],
            self.boxes[index],
            self.iou_preds[index],
            self.stability[index],
            self.points[index],
            self.crop_boxes[index],
        )

    @classmethod
    def concat(cls, parts: list[_Masks]) -> _Masks:
        if not parts:
            return cls.empty()
        return cls(
            [c for p in parts for c in p.crops],
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.iou_preds for p in parts]),
            np.concatenate([p.stability for p in parts]),
            np.concatenate([p.points for p in parts]),
            np.concatenate([p.crop_boxes for p in parts]),
        )


def _merge_crops(data: _Masks, nms_thresh: float) -> _Masks:
    """Duplicates between crops (or tiles) removed by box NMS: masks of smaller crops win."""
    scores = np.float32(1) / mu.box_area(data.crop_boxes).astype(np.float32)
    return data.take(mu.nms(data.boxes, scores, nms_thresh))


@lru_cache(maxsize=32)
def _upscaling(
    low_res: int, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
):
    """Upscaling matrices and, per axis, which output pixels each low-res pixel reaches.

    Returns, for rows and for columns: the (n_out, low_res) matrix; for each
    low-res index the first and last output index it contributes to; for each
    output index the first and last low-res index it reads.
    """
    axes = []
    for mat in upscale_matrices(low_res, image_size, input_size, original_size):
        mat = mat.toarray()  # sparse -> dense float32, sliced per mask below
        nz = mat != 0
        reach_first = np.argmax(nz, axis=0)
        reach_last = len(mat) - 1 - np.argmax(nz[::-1], axis=0)
        read_first = np.argmax(nz, axis=1)
        read_last = mat.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
        axes.append((mat, reach_first, reach_last, read_first, read_last))
    return tuple(axes)


def _first_last(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last True index along the last axis (0, -1 where there is none)."""
    first = np.argmax(flags, axis=-1)
    last = flags.shape[-1] - 1 - np.argmax(flags[..., ::-1], axis=-1)
    return first, last


class _BatchCounter:
    """Counts decoded point batches and reports ``progress(done, total)`` after each."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None) -> None:
        self.done, self.total, self.progress = 0, total, progress
        if progress is not None:
            progress(0, total)

    def step(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


class SAMAutomaticMaskGenerator:
    """Generate masks for a whole image from a grid of point prompts.

    The parameters and their meaning are those of the official
    ``segment_anything.SamAutomaticMaskGenerator`` (defaults tuned there for
    ViT-H):

    Args:
        model_or_predictor: a :class:`~napari_sam_keras.SAMNetwork` (from
            :func:`~napari_sam_keras.load_model`), a keras-cv
            ``SegmentAnythingModel``, or a :class:`~napari_sam_keras.SAMPredictor`
            (its current image is restored after :meth:`generate`).
        points_per_side: points sampled along each side of the image
            (``points_per_side**2`` prompts); None when ``point_grids`` is given.
        points_per_batch: prompts decoded per model call; keep it fixed, each
            new value compiles the prompt decoder once more.
        pred_iou_thresh: keep masks whose predicted IoU is above this (0..1).
        stability_score_thresh: keep masks whose stability score (IoU of the
            mask thresholded at +- ``stability_score_offset``) is at least this.
        stability_score_offset: shift of the logit cutoff for the stability score.
        box_nms_thresh: box IoU above which duplicate masks of one crop are dropped.
        crop_n_layers: if > 0, also segment crops of the image; layer i has
            (2**i)**2 crops.
        crop_nms_thresh: box IoU above which duplicates between crops are dropped
            (masks of smaller crops win).
        crop_overlap_ratio: overlap of the crops of the first layer, as a
            fraction of the image's shorter side.
        crop_n_points_downscale_factor: layer i samples
            ``points_per_side / factor**i`` points per side.
        point_grids: explicit (N, 2) xy grids in [0, 1], one per crop layer,
            instead of ``points_per_side``.
        min_mask_region_area: if > 0, remove holes and islands smaller than
            this many pixels (8-connected) from each mask, then drop new
            duplicates (unchanged masks win).
        output_mode: ``"binary_mask"`` (H, W) bool arrays,
            ``"uncompressed_rle"`` or ``"coco_rle"`` (needs pycocotools).
        tile_shape: if given, (h, w) tiles (an int means square) are
            segmented like crops: each tile with ``halo`` pixels of its
            neighbours is embedded, prompted with the point grid, masks that
            touch a tile's edge inside the image are dropped, and duplicates
            between tiles are removed by NMS (``crop_nms_thresh``; masks of
            smaller tiles win), so an object on a tile border is found once if
            it fits in a tile plus its halo.  The image may be lazy (dask,
            zarr): it is read one tile at a time.  Not combined with
            ``crop_n_layers``.
        halo: (rows, columns) added to each side of a tile (default 0).
        embeddings: an :class:`~napari_sam_keras.EmbeddingStore` or its path,
            or an in-memory :class:`~napari_sam_keras.EmbeddingCache` (or a
            dict), as every ``embeddings=`` of the package accepts (default:
            the predictor's): embeddings of the image (or its tiles) are read
            from it and what is computed is put into it.

    After :meth:`generate`, ``dropped`` counts the candidate masks that
    ``pred_iou_thresh`` and ``stability_score_thresh`` rejected (what
    :func:`~napari_sam_keras.segmentation.generator_settings.few_objects_hint`
    reads to say which one to loosen).
    """

    def __init__(
        self,
        model_or_predictor: Any,
        points_per_side: int | None = DEFAULTS.points_per_side,
        points_per_batch: int = DEFAULTS.points_per_batch,
        pred_iou_thresh: float = DEFAULTS.pred_iou_thresh,
        stability_score_thresh: float = DEFAULTS.stability_score_thresh,
        stability_score_offset: float = DEFAULTS.stability_score_offset,
        box_nms_thresh: float = DEFAULTS.box_nms_thresh,
        crop_n_layers: int = DEFAULTS.crop_n_layers,
        crop_nms_thresh: float = DEFAULTS.crop_nms_thresh,
        crop_overlap_ratio: float = DEFAULTS.crop_overlap_ratio,
        crop_n_points_downscale_factor: int = DEFAULTS.crop_n_points_downscale_factor,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = DEFAULTS.min_mask_region_area,
        output_mode: str = "binary_mask",
        tile_shape: int | tuple[int, int] | None = None,
        halo: int | tuple[int, int] | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise SAMError("Give exactly one of points_per_side and point_grids.")
        check_generator_options(
            {
                "crop_n_layers": crop_n_layers,
                "points_per_batch": points_per_batch,
                "min_mask_region_area": min_mask_region_area,
                "points_per_side": points_per_side,
                "crop_n_points_downscale_factor": crop_n_points_downscale_factor,
            }
        )
        if points_per_side is not None:
            grids = mu.build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            grids = [np.asarray(g, np.float64).reshape(-1, 2) for g in point_grids]
            if len(grids) < crop_n_layers + 1:
                raise SAMError(
                    f"point_grids has {len(grids)} grid(s); crop_n_layers={crop_n_layers} "
                    f"needs one per layer ({crop_n_layers + 1})."
                )
        if output_mode not in OUTPUT_MODES:
            raise SAMError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}.")
        if output_mode == "coco_rle":
            mu.import_pycocotools_mask()
        if tile_shape is not None and crop_n_layers > 0:
            raise SAMError("tile_shape and crop_n_layers > 0 cannot be combined.")
        if tile_shape is None and halo is not None:
            raise ImageError("halo was given without tile_shape.")
        self.tile_shape = as_pair(tile_shape, "tile_shape", 1)
        self.halo = as_pair(halo, "halo", 0)

        if isinstance(model_or_predictor, SAMPredictor):
            self.predictor = model_or_predictor
        else:
            self.predictor = SAMPredictor(as_network(model_or_predictor))
        self.memory: EmbeddingMemory | None
        self.store: EmbeddingStore | None
        if embeddings is None:
            self.memory, self.store = self.predictor.memory, self.predictor.store
        else:
            self.memory, self.store = split_embeddings(embeddings)
        self.point_grids = grids
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.dropped = {"pred_iou_thresh": 0, "stability_score_thresh": 0}

    # --- public ----------------------------------------------------------------------

    def generate(
        self,
        image: np.ndarray,
        progress: ProgressCallback | None = None,
        contrast_limits: tuple[float, float] | None = None,
        embedding: ImageEmbedding | None = None,
    ) -> list[dict[str, Any]]:
        """Masks for ``image``: (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA.

        uint8 images are used as they are; other dtypes are mapped to 0..255
        from ``contrast_limits`` (default: the image's min and max).

        Args:
            progress: optional ``progress(done, total)``, called with (0, total)
                before the work starts and after every batch of point prompts
                (``total`` batches over all crops).  If it raises
                :class:`~napari_sam_keras.OperationCancelled`, generation stops
                and the exception propagates.
            embedding: optional precomputed embedding of the whole image (e.g.
                from a cache), used instead of computing it again.

        Returns:
            One record (dict) per mask, as the official generator makes them:
            ``segmentation`` (per ``output_mode``), ``area`` (int pixels),
            ``bbox`` (XYWH ints), ``predicted_iou``, ``point_coords``
            ([[x, y]]), ``stability_score``, ``crop_box`` (XYWH).
        """
        self.dropped = {"pred_iou_thresh": 0, "stability_score_thresh": 0}
        tiles = self._plane_embeddings(image, contrast_limits, embedding)
        if tiles is not None and tiles.tiled:
            rgb = None
            orig_size = tiles.shape
            crop_boxes = [t.crop_box for t in tiles.grid]
            layer_idxs = [0] * len(crop_boxes)
        else:
            rgb = to_rgb_uint8(image, contrast_limits)
            orig_size = rgb.shape[:2]
            if embedding is not None and tuple(embedding.original_size) != tuple(orig_size):
                raise ImageError(
                    f"The embedding was computed for an image of size "
                    f"{embedding.original_size}, not {tuple(orig_size)}."
                )
            crop_boxes, layer_idxs = mu.generate_crop_boxes(
                orig_size, self.crop_n_layers, self.crop_overlap_ratio
            )
        ppb = self.points_per_batch
        total = sum(math.ceil(len(self.point_grids[i]) / ppb) for i in layer_idxs)
        counter = _BatchCounter(total, progress)

        previous = self._predictor_state()
        try:
            parts = []
            for number, (crop_box, layer) in enumerate(zip(crop_boxes, layer_idxs, strict=True)):
                if tiles is not None and tiles.tiled:
                    crop_embedding = tiles.embedding(number)
                elif crop_box == [0, 0, orig_size[1], orig_size[0]]:
                    crop_embedding = embedding if tiles is None else tiles.embedding(0)
                else:
                    crop_embedding = None
                parts.append(
                    self._process_crop(rgb, crop_box, layer, orig_size, crop_embedding, counter)
                )
        finally:
            self._restore_predictor(previous)
        data = _Masks.concat(parts)

        if len(crop_boxes) > 1 and len(data):
            data = _merge_crops(data, self.crop_nms_thresh)

        if self.min_mask_region_area > 0 and len(data):
            data = self._remove_small_regions(
                data, orig_size, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
        return self._records(data, orig_size)

    # --- steps -----------------------------------------------------------------------

    def _plane_embeddings(self, image, contrast_limits, embedding) -> EmbeddingSource | None:
        """Where the image's (or its tiles') embeddings come from, when a store, a cache or
        tiles are used.

        None: the whole image is embedded as before (or ``embedding`` is used).
        """
        unsourced = self.store is None and self.memory is None
        if self.tile_shape is None and (unsourced or embedding is not None):
            return None
        if embedding is not None:
            raise ImageError("embedding= cannot be combined with tile_shape.")
        tile_shape, halo = self.tile_shape, self.halo
        if tile_shape is None and self.store is not None and self.store.spec is not None:
            tile_shape, halo = self.store.spec.tile_shape, self.store.spec.halo
            if tile_shape is not None and self.crop_n_layers > 0:
                raise SAMError("This store is tiled: tiles and crop_n_layers > 0 do not mix.")
        return EmbeddingSource(
            self.predictor.image_encoder,
            image,
            tile_shape,
            halo,
            contrast_limits,
            store=self.store,
            cache_bytes=1,  # keep only the newest embedding in memory
            memory=self.memory,
            key=None
            if self.memory is None
            else image_key(image, contrast_limits, "RGB", self.predictor.network),
        )

    def _predictor_state(self):
        p = self.predictor
        tiles = tiles_of(p)
        if tiles is not None:
            return ("tiles", tiles)
        return ("embedding", p.embedding_state()) if p.is_image_set else None

    def _restore_predictor(self, previous) -> None:
        if previous is None:
            self.predictor.reset_image()
        elif previous[0] == "embedding":
            self.predictor.set_embedding(previous[1])
        else:
            self.predictor.set_tiles(previous[1])

    def _process_crop(self, rgb, crop_box, layer, orig_size, embedding, counter) -> _Masks:
        x0, y0, x1, y1 = crop_box
        if embedding is None:  # a zoomed-in crop: always computed, never stored
            embedding = self.predictor.image_encoder.embed(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        self.predictor.set_embedding(embedding)
        crop_size = (y1 - y0, x1 - x0)
        points = self.point_grids[layer] * np.array([[crop_size[1], crop_size[0]]], np.float64)

        parts = []
        ppb = self.points_per_batch
        for start in range(0, len(points), ppb):
            batch = points[start : start + ppb]
            parts.append(self._process_batch(batch, crop_size, crop_box, orig_size))
            counter.step()
        data = _Masks.concat(parts)
        if not len(data):
            return data

        data = data.take(mu.nms(data.boxes, data.iou_preds, self.box_nms_thresh))
        data.boxes = mu.uncrop_boxes(data.boxes, crop_box)
        data.points = mu.uncrop_points(data.points, crop_box)
        data.crop_boxes = np.tile(np.asarray(crop_box, np.int64), (len(data), 1))
        return data

    def _process_batch(self, points: np.ndarray, crop_size, crop_box, orig_size) -> _Masks:
        """Masks of one batch of points, in the crop's frame, filtered as the official code does."""
        predictor = self.predictor
        emb = predictor.embedding_state()
        n = len(points)
        in_frame = np.zeros((self.points_per_batch, 1, 2), np.float32)  # fixed batch size
        in_frame[:n, 0] = to_input_frame(points, emb.original_size, emb.input_size)
        labels = np.ones((self.points_per_batch, 1), np.int32)
        low_res, iou = predictor.predict_input_frame(in_frame, labels, multimask_output=True)
        per_point = low_res.shape[1]
        m = low_res.shape[-1]
        low_res = low_res[:n].reshape(-1, m, m)
        iou_preds = np.asarray(iou[:n], np.float32).reshape(-1)
        points = np.repeat(points, per_point, axis=0)

        if self.pred_iou_thresh > 0.0:
            keep = iou_preds > self.pred_iou_thresh
            self.dropped["pred_iou_thresh"] += int(np.count_nonzero(~keep))
            low_res, iou_preds, points = low_res[keep], iou_preds[keep], points[keep]

        crops, boxes, stability = self._upscale_and_score(low_res, emb, crop_size)
        keep = np.ones(len(crops), bool)
        if self.stability_score_thresh > 0.0:
            keep = stability >= self.stability_score_thresh
            self.dropped["stability_score_thresh"] += int(np.count_nonzero(~keep))
        orig_box = [0, 0, orig_size[1], orig_size[0]]
        keep &= ~mu.is_box_near_crop_edge(boxes, crop_box, orig_box)
        index = np.flatnonzero(keep)
        return _Masks(
            [crops[i] for i in index],
            boxes[index],
            iou_preds[index],
            stability[index],
            points[index],
            np.zeros((len(index), 4), np.int64),
        )

    def _upscale_and_score(self, low_res: np.ndarray, emb: ImageEmbedding, crop_size):
        """Upscale each mask where it can be positive; its crop, box and stability score.

        An output pixel is a convex combination of the low-res logits it
        reads, so it can exceed the lowest threshold only if one of those
        does: the rest of the image is below every threshold and is skipped.
        """
        k = len(low_res)
        thr, off = MASK_THRESHOLD, self.stability_score_offset
        lowest = min(thr, thr - off, thr + off)
        (
            (r_mat, r_reach0, r_reach1, r_read0, r_read1),
            (c_mat, c_reach0, c_reach1, c_read0, c_read1),
        ) = _upscaling(
            low_res.shape[-1],
            self.predictor.config.image_size,
            tuple(emb.input_size),
            tuple(crop_size),
        )
        above = low_res > lowest
        rows_any, cols_any = above.any(axis=2), above.any(axis=1)
        present = rows_any.any(axis=1)
        i0, i1 = _first_last(rows_any)
        j0, j1 = _first_last(cols_any)

        crops: list[np.ndarray] = []
        boxes = np.zeros((k, 4), np.int64)
        inter = np.zeros(k, np.int64)
        union = np.zeros(k, np.int64)
        empty = np.zeros((1, 1), bool)
        for n in range(k):
            if not present[n]:
                crops.append(empty)
                continue
            ya, yb = r_reach0[i0[n]], r_reach1[i1[n]] + 1  # output rows that can be positive
            xa, xb = c_reach0[j0[n]], c_reach1[j1[n]] + 1
            ra, rb = r_read0[ya], r_read1[yb - 1] + 1  # low-res rows those output rows read
            ca, cb = c_read0[xa], c_read1[xb - 1] + 1
            rows, cols = r_mat[ya:yb, ra:rb], c_mat[xa:xb, ca:cb]
            lr = low_res[n, ra:rb, ca:cb]
            if (yb - ya) * (cb - ca) * (rb - ra + xb - xa) <= (xb - xa) * (rb - ra) * (
                cb - ca + yb - ya
            ):
                logits = (rows @ lr) @ cols.T
            else:
                logits = rows @ (lr @ cols.T)
            inter[n] = np.count_nonzero(logits > thr + off)
            union[n] = np.count_nonzero(logits > thr - off)
            mask = logits > thr
            box = mu.masks_to_boxes(mask)
            if mask.any():
                crops.append(mask[box[1] : box[3] + 1, box[0] : box[2] + 1])
                boxes[n] = box + np.array([xa, ya, xa, ya])
            else:
                crops.append(empty)
        with np.errstate(divide="ignore", invalid="ignore"):
            stability = inter.astype(np.float32) / union.astype(np.float32)
        return crops, boxes, stability

    def _remove_small_regions(self, data: _Masks, orig_size, nms_thresh: float) -> _Masks:
        """Remove small holes and islands, then drop new duplicates (unchanged masks win)."""
        area = self.min_mask_region_area
        new_crops, new_boxes = [], np.zeros_like(data.boxes)
        unchanged = np.zeros(len(data), np.float32)
        for i, crop in enumerate(data.crops):
            y0, x0 = int(data.boxes[i, 1]), int(data.boxes[i, 0])
            crop2, y2, x2, changed = mu.remove_small_regions_in_crop(crop, y0, x0, orig_size, area)
            new_crops.append(crop2)
            if crop2.any():
                new_boxes[i] = [x2, y2, x2 + crop2.shape[1] - 1, y2 + crop2.shape[0] - 1]
            unchanged[i] = float(not changed)
        keep = mu.nms(new_boxes, unchanged, nms_thresh)
        for i in keep:
            if not unchanged[i]:
                data.crops[i] = new_crops[i]
                data.boxes[i] = new_boxes[i]
        return data.take(keep)

    def _records(self, data: _Masks, orig_size) -> list[dict[str, Any]]:
        h, w = orig_size
        xywh = mu.box_xyxy_to_xywh(data.boxes)
        crop_xywh = mu.box_xyxy_to_xywh(data.crop_boxes)
        records = []
        for i, crop in enumerate(data.crops):
            y0, x0 = int(data.boxes[i, 1]), int(data.boxes[i, 0])
            if not crop.any():
                y0 = x0 = 0
            if self.output_mode == "binary_mask":
                seg = np.zeros((h, w), bool)
                seg[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
            else:
                seg = mu.crop_mask_to_rle(crop, y0, x0, (h, w))
                if self.output_mode == "coco_rle":
                    seg = mu.coco_encode_rle(seg)
            records.append(
                {
                    "segmentation": seg,
                    "area": int(np.count_nonzero(crop)),
                    "bbox": [int(v) for v in xywh[i]],
                    "predicted_iou": float(data.iou_preds[i]),
                    "point_coords": [[float(v) for v in data.points[i]]],
                    "stability_score": float(data.stability[i]),
                    "crop_box": [int(v) for v in crop_xywh[i]],
                }
            )
        return records
