"""One object through every z-slice: prompts on some slices, SAM carries the mask to the rest.

:func:`segment_volume` segments the prompted slices from their prompts, then
carries the object outwards from the lowest and the highest of them one slice
at a time, each slice prompted from its neighbour's mask, and fills the gaps
between prompted slices from both ends.  It stops where the object ends: where
the new mask's IoU with its neighbour's falls below ``iou_threshold``, where
the mask is empty, at the volume's edge, or at a slice whose only prompt is one
negative point (a stop marker).

:class:`SlicePropagator` is the machinery it shares with
:func:`~napari_sam_keras.segmentation.tracking.track_object`: embeddings taken
from / put into a cache, prompts derived from a mask, progress and
cancellation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np

from ..errors import ImageError, PromptError, SAMError
from ..model.as_network import as_network
from ..model.embedding import ImageEmbedding
from ..processing.mask_prompts import (
    interior_point,
    mask_box,
    mask_iou,
    mask_points,
    mask_to_low_res_logits,
)
from ..processing.prompts import check_boxes, check_points
from .embedding_source import EmbeddingMemory, Embeddings, EmbeddingSource, split_embeddings
from .predictor import SAMPredictor
from .store_binding import bind_planes
from .tiled_predictor import TiledSAMPredictor, tiles_of
from .tiling import as_pair, centroid_points

logger = logging.getLogger(__name__)

#: How a slice's mask becomes the next slice's prompt.
PROJECTIONS = ("mask", "box", "points", "single_point", "points_and_mask")

#: ``progress(done, total)``: slices (or frames) done out of those that may be visited.
ProgressCallback = Callable[[int, int], Any]

_PROMPT_KEYS = ("point_coords", "point_labels", "box")


# --- input checks --------------------------------------------------------------------


def check_volume(volume: Any, what: str = "volume", axis: str = "Z") -> np.ndarray:
    """A (N, Y, X) or (N, Y, X, 3) array of numbers, or a clear :class:`ImageError`."""
    volume = np.asarray(volume)
    rgb = volume.ndim == 4 and volume.shape[-1] in (3, 4)
    if volume.ndim != 3 and not rgb:
        hint = " For one 2D image use SAMPredictor." if volume.ndim == 2 else ""
        raise ImageError(
            f"The {what} must be a stack ({axis}, Y, X) or ({axis}, Y, X, 3) of 2D images, got "
            f"shape {tuple(volume.shape)}.{hint}"
        )
    if min(volume.shape[:3]) < 1:
        raise ImageError(f"The {what} is empty (shape {tuple(volume.shape)}).")
    numeric = np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)
    if volume.dtype != bool and not numeric:
        raise ImageError(f"Unsupported {what} dtype {volume.dtype}; expected numbers.")
    if np.issubdtype(volume.dtype, np.floating) and not np.all(np.isfinite(volume)):
        raise ImageError(f"The {what} contains NaN or infinite values; fill or mask them first.")
    return volume


def default_contrast_limits(volume: np.ndarray, contrast_limits) -> tuple[float, float] | None:
    """The limits every slice is mapped with: given ones, else the stack's min and max.

    One mapping for the whole stack keeps a slice with only background dark
    (a per-slice min/max would stretch its noise to full contrast).  uint8
    stacks are used as they are.
    """
    if contrast_limits is not None:
        low, high = (float(v) for v in contrast_limits)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ImageError(f"Contrast limits must be finite numbers, got {contrast_limits}.")
        return low, high
    if volume.dtype in (np.uint8, bool):
        return None
    return float(volume.min()), float(volume.max())


def split_prompts(
    prompts: Mapping[int, Mapping[str, Any]], count: int, size: tuple[int, int], axis: str
) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """Checked prompts per slice, and the stop markers (a slice with one negative point only).

    Every prompt is checked before any embedding is computed, so bad input
    fails at once.
    """
    if not isinstance(prompts, Mapping) or not prompts:
        raise PromptError(
            f"No prompts: give a mapping {{{axis.lower()} index: {{'point_coords': ..., "
            "'point_labels': ..., 'box': ...}}} with at least one prompted slice."
        )
    checked: dict[int, dict[str, Any]] = {}
    stops: set[int] = set()
    for key, prompt in prompts.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
            raise PromptError(f"Prompt keys must be integer {axis.lower()} indices, got {key!r}.")
        index = int(key)
        if not 0 <= index < count:
            raise PromptError(
                f"Prompts were given for {axis.lower()} = {index}, outside the stack of {count} "
                f"slices (0 to {count - 1})."
            )
        if not isinstance(prompt, Mapping):
            raise PromptError(
                f"The prompts of {axis.lower()} = {index} must be a mapping with point_coords, "
                f"point_labels and/or box; got {type(prompt).__name__}."
            )
        unknown = set(prompt) - set(_PROMPT_KEYS)
        if unknown:
            raise PromptError(
                f"Unknown prompt keys {sorted(unknown)} for {axis.lower()} = {index}; use "
                f"{', '.join(_PROMPT_KEYS)}."
            )
        coords, labels, box = (prompt.get(k) for k in _PROMPT_KEYS)
        entry: dict[str, Any] = {}
        try:
            if coords is not None or labels is not None:
                entry["point_coords"], entry["point_labels"] = check_points(coords, labels, size)
            if box is not None:
                entry["box"] = check_boxes(box, size)
        except PromptError as err:
            raise PromptError(f"{axis.lower()} = {index}: {err}") from None
        if not entry:
            raise PromptError(f"{axis.lower()} = {index} has no prompt (no points, no box).")
        if (
            "box" not in entry
            and "point_labels" in entry
            and len(entry["point_labels"]) == 1
            and entry["point_labels"][0] == 0
        ):
            stops.add(index)
        else:
            checked[index] = entry
    if not checked:
        raise PromptError(
            "Only stop markers were given (a single negative point on a slice): add at least "
            "one positive point or a box on the object."
        )
    return checked, stops


def check_parameters(projection: str, iou_threshold: float, box_extension: float) -> None:
    if projection not in PROJECTIONS:
        raise SAMError(f"Unknown projection {projection!r}; use one of {', '.join(PROJECTIONS)}.")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise SAMError(f"iou_threshold must be between 0 and 1, got {iou_threshold}.")
    if not float(box_extension) >= 0.0:
        raise SAMError(f"box_extension must be 0 or more, got {box_extension}.")


# --- the shared machinery ------------------------------------------------------------


class SlicePropagator:
    """Segments slices of one stack with one predictor: from prompts or from a mask.

    Embeddings are computed only for the slices asked for, and taken from /
    put into ``embeddings`` when given (see :data:`~.embedding_source.Embeddings`).
    In an in-memory cache the key of slice ``i`` is ``slice_key(i)`` when
    given, else a digest of the slice's pixels, its contrast limits and the
    model, so that the same data under the same model finds its embedding
    again whatever stack it is part of.  An :class:`EmbeddingStore` (or its
    path) is bound to the whole stack, slice ``i`` being its plane ``i``; with
    none, a predictor's own store is used.  With a ``tile_shape``, every slice
    is tiled (see ``TiledSAMPredictor.set_image``) and ``embeddings`` holds one
    embedding per tile, under keys that include the tiling
    (:func:`~napari_sam_keras.segmentation.tile_keys.tile_key`).

    Progress: :meth:`advance` counts slices done and calls ``progress(done,
    total)``; an :class:`~napari_sam_keras.OperationCancelled` raised there
    ends the work (the caller's :func:`run` restores the predictor's image).
    """

    def __init__(
        self,
        model: Any,
        stack: np.ndarray,
        contrast_limits: tuple[float, float] | None,
        embeddings: Embeddings | None,
        progress: ProgressCallback | None,
        slice_key: Callable[[int], Hashable] | None,
        total: int,
        tile_shape: int | tuple[int, int] | None = None,
        halo: int | tuple[int, int] | None = None,
    ) -> None:
        if tile_shape is None and halo is not None:
            raise ImageError("halo was given without tile_shape.")
        self.predictor = (
            model if isinstance(model, SAMPredictor) else SAMPredictor(as_network(model))
        )
        if tile_shape is not None:  # every slice is cut into tiles: a predictor that tiles
            self.predictor = TiledSAMPredictor.of(self.predictor)
        self.stack = stack
        self.contrast_limits = contrast_limits
        self.embeddings: EmbeddingMemory | None
        self.embeddings, store = split_embeddings(embeddings)
        self.store = self.predictor.store if store is None else store
        self.progress = progress
        self.slice_key = slice_key
        self.tile_shape = as_pair(tile_shape, "tile_shape", 1)
        self.halo = as_pair(halo, "halo", 0)
        self.total = total
        self.done = 0
        self.size = tuple(int(v) for v in stack.shape[1:3])
        self._current: int | None = None
        self._source: EmbeddingSource | None = None  # the current slice's, with a store or tiles
        self._counted = 0  # of the current slice's computed embeddings, those in ``computed``
        self.computed = 0  # embeddings computed (not found in the store); tiles count one each
        if self.store is not None:
            bind_planes(
                self.store,
                self.predictor.network,
                list(stack),
                True,
                contrast_limits,
                "RGB",
                self.tile_shape,
                self.halo,
            )

    # work accounting
    def start(self) -> None:
        if self.progress is not None:
            self.progress(0, self.total)

    def advance(self, count: int = 1) -> None:
        if count <= 0:
            return
        self.done = min(self.total, self.done + count)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def finish(self) -> None:
        """Count the slices that were not visited (the object had ended) as done."""
        if self.done < self.total:
            self.advance(self.total - self.done)

    # embeddings
    def key(self, index: int) -> Hashable:
        if self.slice_key is not None:
            return self.slice_key(index)
        data = np.ascontiguousarray(self.stack[index])
        digest = hashlib.sha1(data.tobytes())
        digest.update(repr((data.shape, str(data.dtype), self.contrast_limits)).encode())
        return ("slice", digest.hexdigest(), self.predictor.network.key)

    def select(self, index: int) -> None:
        """Make slice ``index`` the predictor's image (from memory or the store, or computed)."""
        if self._current == index:
            return
        if self.tile_shape is None and self.store is None:
            self._select_plain(index)
        else:
            self._select_source(index)
        self._current = index

    def _select_plain(self, index: int) -> None:
        """The whole slice, from ``embeddings`` (memory) or computed and kept there."""
        key = self.key(index) if self.embeddings is not None else None
        embedding: ImageEmbedding | None = None
        if key is not None:
            embedding = self.embeddings.get(key)
        if embedding is not None:
            self.predictor.set_embedding(embedding)
        else:
            self.predictor.set_image(self.stack[index], contrast_limits=self.contrast_limits)
            self.computed += 1
            if key is not None:
                embedding = self.predictor.embedding_state()
                if hasattr(self.embeddings, "put"):
                    self.embeddings.put(key, embedding)
                else:
                    self.embeddings[key] = embedding

    def _select_source(self, index: int) -> None:
        """Slice ``index`` through an :class:`EmbeddingSource` (memory, store, encoder); a
        tiled slice's tiles are embedded when a prompt needs them."""
        source = EmbeddingSource(
            self.predictor.image_encoder,
            self.stack[index],
            self.tile_shape,
            self.halo,
            self.contrast_limits,
            store=self.store,
            plane=None if self.store is None else index,
            memory=self.embeddings,
            key=None if self.embeddings is None else self.key(index),
        )
        self._source, self._counted = source, 0
        if self.tile_shape is None:
            self.predictor.set_embedding(source.embedding(0))
            self._count_computed()
        else:
            self.predictor.set_tiles(source)

    def _count_computed(self) -> None:
        """Count the embeddings the current slice's source computed since the last count."""
        if self._source is not None:
            self.computed += self._source.computed - self._counted
            self._counted = self._source.computed

    def _after_predict(self) -> None:
        """Count the tiles a prediction just computed."""
        if self.tile_shape is not None:
            self._count_computed()

    def _tile_mask_input(self, mask: np.ndarray, prompt: Mapping[str, Any]) -> np.ndarray:
        """``mask`` as the mask input of the tile that will answer ``prompt``, in its frame."""
        tiles = self.predictor.tiles
        tile = tiles.grid.tile_for_prompt(
            centroid_points(prompt.get("point_coords"), prompt.get("point_labels")),
            prompt.get("box"),
        )
        y0, y1, x0, x1 = tile.outer
        cfg = self.predictor.config
        return mask_to_low_res_logits(
            mask[y0:y1, x0:x1],
            tiles.embedding(tile.index).input_size,
            cfg.image_size,
            cfg.low_res_mask_size,
        )

    # segmentation
    def from_prompts(self, index: int, prompt: Mapping[str, Any]) -> np.ndarray:
        """The mask of slice ``index`` from the user's (checked) prompts."""
        self.select(index)
        single_point = "box" not in prompt and len(prompt.get("point_labels", ())) == 1
        mask, _ = self.predictor.predict_best(multimask_output=single_point, **prompt)
        self._after_predict()
        return mask

    def from_mask(
        self, index: int, mask: np.ndarray, projection: str, box_extension: float
    ) -> np.ndarray:
        """The mask of slice ``index`` prompted from ``mask`` (a neighbour's), by ``projection``."""
        self.select(index)
        prompt: dict[str, Any] = {}
        if projection in ("mask", "box"):
            prompt["box"] = mask_box(mask, box_extension)
        if projection in ("points", "points_and_mask"):
            prompt["point_coords"], prompt["point_labels"] = mask_points(mask)
        if projection == "single_point":
            prompt["point_coords"], prompt["point_labels"] = interior_point(mask)[None], [1]
        if projection in ("mask", "points_and_mask"):
            if self.tile_shape is not None:
                prompt["mask_input"] = self._tile_mask_input(mask, prompt)[None]
            else:
                cfg = self.predictor.config
                prompt["mask_input"] = mask_to_low_res_logits(
                    mask, self.predictor.input_size, cfg.image_size, cfg.low_res_mask_size
                )[None]
        new, _ = self.predictor.predict_best(
            multimask_output=projection == "single_point", **prompt
        )
        self._after_predict()
        return new

    def run(self, work: Callable[[], np.ndarray]) -> np.ndarray:
        """Run ``work`` and restore the predictor's own image afterwards (also on errors)."""
        predictor = self.predictor
        tiles = tiles_of(predictor)
        previous = None
        if tiles is None and predictor.is_image_set:
            previous = predictor.embedding_state()
        try:
            self.start()
            result = work()
            self.finish()
            return result
        finally:
            if tiles is not None:
                predictor.set_tiles(tiles)
            elif previous is not None:
                predictor.set_embedding(previous)
            else:
                predictor.reset_image()


def accept(previous: np.ndarray, new: np.ndarray, iou_threshold: float, where: str) -> bool:
    """Whether ``new`` continues the object of ``previous`` (logged when it does not)."""
    if not new.any():
        logger.info("propagation stopped at %s: the mask is empty", where)
        return False
    iou = mask_iou(previous, new)
    if iou < iou_threshold:
        logger.info(
            "propagation stopped at %s: IoU %.2f with the previous mask is below %.2f",
            where,
            iou,
            iou_threshold,
        )
        return False
    return True


# --- the volume ----------------------------------------------------------------------


def segment_volume(
    model: Any,
    volume: np.ndarray,
    prompts: Mapping[int, Mapping[str, Any]],
    projection: str = "mask",
    iou_threshold: float = 0.5,
    box_extension: float = 0.05,
    embeddings: Embeddings | None = None,
    progress: ProgressCallback | None = None,
    contrast_limits: tuple[float, float] | None = None,
    slice_key: Callable[[int], Hashable] | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    halo: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Segment one object through a volume from prompts on one or more of its slices.

    Args:
        model: a :class:`~napari_sam_keras.SAMNetwork` (from
            :func:`~napari_sam_keras.load_model`) or a
            :class:`~napari_sam_keras.SAMPredictor` (its current image is
            restored afterwards).
        volume: (Z, Y, X) grayscale or (Z, Y, X, 3) RGB slices of any numeric dtype.
        prompts: ``{z: {"point_coords": (N, 2) xy, "point_labels": (N,), "box":
            (4,) x0 y0 x1 y1}}``, any of the three keys per slice, as in
            :meth:`SAMPredictor.predict`.  A slice whose only prompt is one
            negative point is a stop marker: the object is not carried into it.
        projection: how a slice's mask prompts the next slice: ``"mask"`` (its
            box and the mask itself as mask input, the default), ``"box"``,
            ``"points"`` (positive points inside, negative around it),
            ``"single_point"`` (the point deepest inside) or
            ``"points_and_mask"``.
        iou_threshold: the propagation stops before a slice whose mask has an
            IoU below this with its neighbour's mask.
        box_extension: the box of ``"mask"``/``"box"`` is grown by this
            fraction of its size on each side.
        embeddings: an :class:`~napari_sam_keras.EmbeddingCache` or a dict, an
            :class:`~napari_sam_keras.EmbeddingStore` or a store's path (the
            same choices as every ``embeddings=`` of the package): embeddings
            are taken from it and the ones computed are put into it, so a
            second run over the same slices computes none.  A store is bound
            to the whole stack (slice z is its plane z, with these contrast
            limits and tiling); one made for other data, another model, tiling
            or contrast limits raises
            :class:`~napari_sam_keras.EmbeddingStoreMismatch`.  Default: the
            predictor's store, if ``model`` is a predictor made with one.
        progress: ``progress(done, total)``, called with (0, total) first and
            after every slice; ``total`` counts every slice the object could
            reach, those it does not reach are counted done when it stops.
            Raising :class:`~napari_sam_keras.OperationCancelled` there stops
            the work and the exception propagates (nothing is returned).
        contrast_limits: (low, high) mapped to 0..255 for every slice; default:
            the volume's min and max (uint8 volumes are used as they are).
        slice_key: ``slice_key(z)`` -> the key of slice z's embedding in
            ``embeddings``; default: a digest of the slice's pixels, the
            contrast limits and the model.
        tile_shape, halo: tile every slice (as ``TiledSAMPredictor.set_image``
            does): each prompt, and each mask carried from a neighbour, is
            answered by the tile holding it, and the mask comes back at full
            resolution.  An object is whole while it fits in a tile plus its
            halo.  Only the tiles a prompt needs are embedded; ``embeddings``
            then holds one embedding per tile, under keys that include the
            tiling (``(slice key, "tile", tile_shape, halo, tile index)``), so
            an untiled embedding is never used for a tile.  None (the
            default): slices are not tiled.

    Returns:
        (Z, Y, X) bool: the object on every slice it reaches.

    Raises:
        ImageError: the volume is not a stack of 2D images.
        PromptError: no prompts, a slice index or a point/box outside the volume.
        SAMError: an unknown ``projection`` or an invalid threshold.
        ImageError: an invalid ``tile_shape`` or ``halo`` (or ``halo`` without
            ``tile_shape``).
    """
    volume = check_volume(volume)
    check_parameters(projection, iou_threshold, box_extension)
    count, height, width = volume.shape[:3]
    checked, stops = split_prompts(prompts, count, (height, width), "Z")
    limits = default_contrast_limits(volume, contrast_limits)
    plan = _plan(sorted(checked), stops, count)
    engine = SlicePropagator(
        model, volume, limits, embeddings, progress, slice_key, plan.total, tile_shape, halo
    )

    def work() -> np.ndarray:
        masks = np.zeros((count, height, width), bool)
        for z in plan.prompted:
            masks[z] = engine.from_prompts(z, checked[z])
            engine.advance()

        def carry(path: list[int], start: np.ndarray) -> None:
            """Prompt each slice of ``path`` from the previous mask, until the object ends."""
            previous = start
            for visited, z in enumerate(path):
                if not previous.any():
                    engine.advance(len(path) - visited)
                    return
                new = engine.from_mask(z, previous, projection, box_extension)
                engine.advance()
                if not accept(previous, new, iou_threshold, f"slice {z}"):
                    engine.advance(len(path) - visited - 1)
                    return
                masks[z] = new
                previous = new

        first, last = plan.prompted[0], plan.prompted[-1]
        carry(plan.below, masks[first])
        carry(plan.above, masks[last])
        for low, high, lower, upper, middle in plan.gaps:
            carry(lower, masks[low])
            carry(upper, masks[high])
            if middle is not None:
                z = middle
                union = masks[z - 1] | masks[z + 1]
                if union.any():
                    new = engine.from_mask(z, union, projection, box_extension)
                    if accept(union, new, iou_threshold, f"slice {z}"):
                        masks[z] = new
                engine.advance()
        return masks

    return engine.run(work)


class _Plan:
    """Which slices are visited in which order (stop markers cut the paths)."""

    def __init__(self) -> None:
        self.prompted: list[int] = []
        self.below: list[int] = []
        self.above: list[int] = []
        # (low prompted, high prompted, path up from low, path down from high, middle or None)
        self.gaps: list[tuple[int, int, list[int], list[int], int | None]] = []

    @property
    def total(self) -> int:
        gap = sum(len(a) + len(b) + (m is not None) for _, _, a, b, m in self.gaps)
        return len(self.prompted) + len(self.below) + len(self.above) + gap


def _until_stop(path: range, stops: set[int]) -> list[int]:
    out = []
    for z in path:
        if z in stops:
            break
        out.append(z)
    return out


def _plan(prompted: list[int], stops: set[int], count: int) -> _Plan:
    plan = _Plan()
    plan.prompted = prompted
    plan.below = _until_stop(range(prompted[0] - 1, -1, -1), stops)
    plan.above = _until_stop(range(prompted[-1] + 1, count), stops)
    for low, high in zip(prompted[:-1], prompted[1:], strict=True):
        n = high - low - 1
        if n <= 0:
            continue
        if any(z in stops for z in range(low + 1, high)):
            # a stop marker in the gap: each side is carried up to it
            lower = _until_stop(range(low + 1, high), stops)
            upper = _until_stop(range(high - 1, low, -1), stops)
            middle = None
        else:  # each side fills half; an odd middle slice is prompted from both
            half = n // 2
            lower = list(range(low + 1, low + 1 + half))
            upper = list(range(high - 1, high - 1 - half, -1))
            middle = low + 1 + half if n % 2 else None
        plan.gaps.append((low, high, lower, upper, middle))
    return plan
