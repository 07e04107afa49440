"""Find all objects like the examples: SAM 3 promptable concept segmentation.

A concept is given by a text (``"nucleus"``), by exemplar boxes drawn around objects
(positive: "like this"; negative: "not like this"), or both.  SAM 3 answers with every
instance of the concept: a mask, a score and a box each.

* Images of any dtype and contrast are converted as for SAM 1
  (:func:`~napari_sam_keras.processing.images.to_rgb_uint8`), squeezed to SAM 3's square
  input (1008 px for the real model) and normalised to -1..1, as the reference does.
* Large images: with ``tile_shape``, each tile plus its halo is segmented on its own
  (:class:`~napari_sam_keras.segmentation.tiling.TileGrid`); an exemplar prompts the
  tiles whose outer block holds it whole, the text prompts every tile (a tile with
  neither is skipped).  Instances touching the edge of a tile's outer block (where it
  is not the image's edge) are dropped: the neighbouring tile sees them whole as long
  as the halo is larger than the objects, and the rest are merged by NMS as
  :class:`~napari_sam_keras.SAMAutomaticMaskGenerator` merges its crops.
* Stacks (Z, Y, X): slice by slice, then linked into 3D objects by
  :func:`~napari_sam_keras.link_slices`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ImageError, PromptError, SAMError
from ..processing.mask_upscaling import upscale_logits
from ..processing.masks import is_box_near_crop_edge, masks_to_boxes, nms
from .labels import masks_to_labels
from .tiling import TiledImage, TileGrid

ProgressCallback = Callable[[int, int], None]
#: Box IoU above which two instances of neighbouring tiles are one (as the generator's crops).
TILE_NMS_THRESHOLD = 0.7


@dataclass
class ConceptResult:
    """The instances found: ``masks`` (N, H, W) bool, ``scores`` (N,), ``boxes`` (N, 4).

    Boxes are XYXY pixels: SAM 3's own boxes from :func:`instances`, the boxes around
    the masks (inclusive ends) after :meth:`ConceptSegmenter.predict`.

    ``labels`` paints them into one (H, W) int32 image (a higher score wins overlaps;
    instance ``i`` gets label ``i + 1``).
    """

    masks: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def labels(self) -> np.ndarray:
        if not len(self):
            return np.zeros(self.shape, np.int32)
        return masks_to_labels(self.masks, self.shape, overlap="score", scores=self.scores)

    def take(self, index: np.ndarray) -> ConceptResult:
        """The instances at ``index`` (indices or a boolean mask)."""
        return ConceptResult(self.masks[index], self.scores[index], self.boxes[index], self.shape)

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> ConceptResult:
        return cls(
            np.zeros((0, *shape), bool),
            np.zeros(0, np.float32),
            np.zeros((0, 4), np.float32),
            shape,
        )


def check_concept_model(model: Any) -> Any:
    """``model`` if it is a SAM 3 concept model, else one clear :class:`SAMError`."""
    from ..model.sam3_loading import ConceptModel

    if isinstance(model, ConceptModel):
        return model
    name = type(model).__name__
    if name in ("SAMNetwork", "SAMPredictor"):
        raise SAMError(
            "'Find all like the examples' needs a SAM 3 concept model (load_concept_model), "
            "not a SAM 1 model: SAM 1 answers one prompt with one object."
        )
    raise SAMError(f"Expected a SAM 3 ConceptModel (load_concept_model), got a {name}.")


def check_exemplars(
    exemplars: Any, exemplar_labels: Any, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) XYXY float32 boxes and (N,) int32 labels (1 positive, 0 negative), checked."""
    if exemplars is None or len(exemplars) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int32)
    try:
        boxes = np.asarray(exemplars, np.float64).reshape(-1, 4)
    except (TypeError, ValueError) as err:
        raise PromptError(f"Exemplars must be boxes (x0, y0, x1, y1), got {exemplars!r}.") from err
    if exemplar_labels is None:
        labels = np.ones(len(boxes), np.int32)
    else:
        labels = np.asarray(exemplar_labels).reshape(-1)
        if len(labels) != len(boxes) or not np.isin(labels, (0, 1)).all():
            raise PromptError(
                f"Give one label per exemplar box, 1 (positive) or 0 (negative); got "
                f"{len(labels)} labels {labels.tolist()} for {len(boxes)} boxes."
            )
        labels = labels.astype(np.int32)
    h, w = shape
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        where = f"Exemplar {i + 1} ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if not np.all(np.isfinite([x0, y0, x1, y1])):
            raise PromptError(f"{where} has a coordinate that is not a finite number.")
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"{where} has no area: draw a box around an example object.")
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise PromptError(f"{where} is outside the image of {w} x {h} pixels.")
    return boxes.astype(np.float32), labels


def _model_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 -> (1, S, S, 3) float32 in -1..1 (squeezed to the square, as the reference)."""
    from ..model.sam3_loading import PIXEL_MEAN, PIXEL_STD

    resized = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), np.float32)
    return ((resized - PIXEL_MEAN) / PIXEL_STD)[None]


def _box_input(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 4) XYXY pixels -> (1, N, 5): batch index, then centre and size in 0..1."""
    h, w = shape
    b = boxes.astype(np.float32) / np.array([w, h, w, h], np.float32)
    cxcywh = np.stack(
        [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
        axis=-1,
    )
    return np.concatenate([np.zeros((len(b), 1), np.float32), cxcywh], -1)[None]


class ConceptSegmenter:
    """Every object of a concept (text and/or exemplar boxes) in an image or a stack.

    Args:
        model: a :class:`~napari_sam_keras.model.sam3_loading.ConceptModel`
            (:func:`~napari_sam_keras.load_concept_model`).
        nms_threshold: box IoU above which instances of neighbouring tiles are merged.
    """

    def __init__(self, model: Any, nms_threshold: float = TILE_NMS_THRESHOLD) -> None:
        self.model = check_concept_model(model)
        self.nms_threshold = float(nms_threshold)

    # --- one image ---------------------------------------------------------------------

    def predict(
        self,
        image: Any,
        text: str | None = None,
        exemplars: Sequence[Sequence[float]] | np.ndarray | None = None,
        exemplar_labels: Sequence[int] | np.ndarray | None = None,
        score_threshold: float = 0.5,
        contrast_limits: tuple[float, float] | None = None,
        tile_shape: int | tuple[int, int] | None = None,
        halo: int | tuple[int, int] | None = None,
        progress: ProgressCallback | None = None,
    ) -> ConceptResult:
        """All instances of the concept in a 2D (H, W) or RGB (H, W, 3) image.

        Args:
            text: the concept in words (optional).
            exemplars: boxes (x0, y0, x1, y1) in pixels around example objects.
            exemplar_labels: 1 (positive, the default) or 0 (negative) per box.
            score_threshold: an instance is kept when its score (SAM 3's
                instance probability times its presence probability) is above it.
            contrast_limits: intensity range mapped to 0..255 (default: the
                image's min and max; uint8 as is).
            tile_shape, halo: segment tile by tile (see the module docstring).
            progress: ``progress(done, total)`` when the work starts and after each
                step (the text's features, each tile's image features, each tile's
                instances); raising :class:`~napari_sam_keras.OperationCancelled`
                there stops the work.
        """
        if not hasattr(image, "shape") or not hasattr(image, "dtype"):
            image = np.asarray(image)
        shape = _image_shape(image)
        text, boxes, labels = self._check_prompt(text, exemplars, exemplar_labels, shape)
        threshold = _check_threshold(score_threshold)
        grid = TileGrid(shape, tile_shape or shape, halo)
        tiled = TiledImage(image, grid, contrast_limits)
        # A step is done (and a cancel honoured) after the text and after each tile's
        # image features and instances: the real model spends minutes per tile.
        steps = _Steps(progress, 1 + 2 * len(grid))
        steps.report(0)
        ids, mask = self.model.tokenizer(text or "visual")  # Meta's text for boxes alone
        prompt = (self.model.encode_text(ids, mask), mask, text is not None)
        steps.report()
        parts = []
        for tile in grid:
            parts.append(
                self._tile(tiled, tile, prompt, boxes, labels, threshold, len(grid) > 1, steps)
            )
        return merge_tiles(parts, shape, self.nms_threshold)

    def segment(self, image: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """:meth:`predict` painted into (H, W) int32 labels (0 is background)."""
        return self.predict(image, *args, **kwargs).labels

    def segment_volume(
        self,
        volume: Any,
        text: str | None = None,
        exemplars: Any = None,
        exemplar_labels: Any = None,
        exemplar_slice: int | None = None,
        link_iou_threshold: float | None = None,
        min_slices: int = 1,
        progress: ProgressCallback | None = None,
        contrast_limits: tuple[float, float] | None = None,
        **options: Any,
    ) -> np.ndarray:
        """Every slice of a (Z, Y, X) stack, linked into 3D objects; (Z, Y, X) int32 labels.

        Exemplar boxes are drawn on one slice, ``exemplar_slice``; they prompt that slice
        and, as boxes at the same place, every other slice (SAM 3 sees each slice on its
        own).  ``options``: those of :meth:`predict` (``score_threshold``, tiles).
        ``progress(done, total)`` counts :meth:`predict`'s steps over all slices.
        """
        from .volume import check_volume, default_contrast_limits
        from .volume_linking import LINK_IOU_THRESHOLD, link_slices

        volume = check_volume(volume)
        count, height, width = volume.shape[:3]
        self._check_prompt(text, exemplars, exemplar_labels, (height, width))
        if exemplar_slice is not None and not 0 <= int(exemplar_slice) < count:
            raise PromptError(
                f"The exemplar slice {exemplar_slice} is not in the stack of {count}."
            )
        limits = default_contrast_limits(volume, contrast_limits)
        slices = np.zeros((count, height, width), np.int32)
        for z in range(count):

            def slice_progress(done: int, total: int, z: int = z) -> None:
                if progress is not None:
                    progress(z * total + done, count * total)

            slices[z] = self.segment(
                volume[z],
                text,
                exemplars,
                exemplar_labels,
                contrast_limits=limits,
                progress=slice_progress,
                **options,
            )
        threshold = LINK_IOU_THRESHOLD if link_iou_threshold is None else link_iou_threshold
        return link_slices(slices, threshold, min_slices)

    # --- internals ---------------------------------------------------------------------

    def _check_prompt(self, text, exemplars, exemplar_labels, shape):
        if text is not None and not isinstance(text, str):
            raise PromptError(f"The text prompt must be a string, got {type(text).__name__}.")
        text = (text or "").strip() or None
        boxes, labels = check_exemplars(exemplars, exemplar_labels, shape)
        if text is None and not len(boxes):
            raise PromptError(
                "No concept given: type a text (e.g. 'nucleus') or draw at least one exemplar "
                "box around an example object."
            )
        if len(boxes):
            self.model.check_exemplar_boxes()
        return text, boxes, labels

    def _tile(self, tiled, tile, prompt, boxes, labels, threshold, tiled_run, steps):
        """One tile's instances: its image features (one step), then the prompt (another).

        ``prompt``: (text features, padding mask, whether a text was given).
        """
        y0, y1, x0, x1 = tile.outer
        shape = tile.shape
        inside = (
            (boxes[:, 0] >= x0) & (boxes[:, 2] <= x1) & (boxes[:, 1] >= y0) & (boxes[:, 3] <= y1)
        )
        text_features, padding_mask, has_text = prompt
        if not has_text and not inside.any():
            steps.report(2)
            return ConceptResult.empty(shape), tile
        image = self.model.encode_image(_model_input(tiled.rgb(tile), self.model.image_size))
        steps.report()
        tile_boxes = boxes[inside] - np.array([x0, y0, x0, y0], np.float32)
        outputs = self.model.decode(
            image,
            text_features,
            padding_mask,
            _box_input(tile_boxes, shape),
            labels[inside][None].astype(np.int32),
        )
        result = instances(outputs, shape, threshold)
        steps.report()
        return (drop_cut_instances(result, tile, tiled.shape) if tiled_run else result), tile


class _Steps:
    """``progress(done, total)`` after each step: where a cancel (its exception) stops the work."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0

    def report(self, count: int = 1) -> None:
        """``count`` more steps are done (0: the work starts)."""
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)


def instances(outputs: dict[str, np.ndarray], shape: tuple[int, int], threshold: float):
    """SAM 3's outputs for one image -> the instances scoring above ``threshold``.

    As the reference post-processing: score = sigmoid(logit) * sigmoid(presence), mask
    logits resized bilinearly to ``shape`` and cut at 0, boxes scaled to pixels.
    """
    scores = _sigmoid(outputs["pred_logits"][0]) * _sigmoid(outputs["presence_logits"][0, 0])
    keep = np.flatnonzero(scores > threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    low = np.moveaxis(outputs["pred_masks"][0], -1, 0)[keep]
    m = low.shape[-1]
    masks = upscale_logits(low, m, (low.shape[-2], m), shape) > 0 if len(keep) else None
    h, w = shape
    boxes = outputs["pred_boxes"][0][keep] * np.array([w, h, w, h], np.float32)
    if masks is None:
        return ConceptResult.empty(shape)
    return ConceptResult(masks, scores[keep].astype(np.float32), boxes.astype(np.float32), shape)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def drop_cut_instances(result: ConceptResult, tile, image_shape: tuple[int, int]):
    """The instances of a tile that do not touch its outer edge (where that is not the image's).

    An object cut by the tile's edge is seen whole by the neighbouring tile, in its halo.
    """
    if not len(result):
        return result
    mask_boxes = masks_to_boxes(result.masks) + np.array([0, 0, 1, 1])
    image_box = [0, 0, image_shape[1], image_shape[0]]
    cut = is_box_near_crop_edge(mask_boxes, tile.crop_box, image_box, atol=1.0)
    return result.take(~cut)


def merge_tiles(parts: list[tuple[ConceptResult, Any]], shape, nms_threshold: float):
    """Tile results -> one result in image pixels; duplicates across tiles merged by NMS."""
    masks, scores, boxes = [], [], []
    for result, tile in parts:
        y0, y1, x0, x1 = tile.outer
        for mask, score in zip(result.masks, result.scores, strict=True):
            full = np.zeros(shape, bool)
            full[y0:y1, x0:x1] = mask
            masks.append(full)
            scores.append(score)
    if not masks:
        return ConceptResult.empty(shape)
    masks = np.stack(masks)
    scores = np.asarray(scores, np.float32)
    boxes = masks_to_boxes(masks).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    keep = nms(boxes, scores, nms_threshold) if len(parts) > 1 else order
    return ConceptResult(masks[keep], scores[keep], boxes[keep], shape)


def _image_shape(image: Any) -> tuple[int, int]:
    shape = tuple(int(s) for s in image.shape)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
        raise ImageError(
            f"Expected a 2D (H, W) or RGB (H, W, 3) image, got shape {shape}; for a stack "
            "use segment_volume."
        )
    if min(shape[:2]) < 1:
        raise ImageError(f"The image is empty (shape {shape}).")
    return shape[0], shape[1]


def _check_threshold(value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise SAMError(f"The score threshold must be a number, got {value!r}.") from err
    if not 0.0 <= value < 1.0:
        raise SAMError(f"The score threshold must be in [0, 1), got {value}.")
    return value


# --- batch -------------------------------------------------------------------------------


def concept_settings(
    text: str | None = None,
    exemplars: Any = None,
    exemplar_labels: Any = None,
    score_threshold: float = 0.5,
) -> dict[str, Any]:
    """The concept of a batch run as plain JSON values, checked before any work.

    The exemplars' place in each image is checked when the image is read.
    """
    if text is not None and not isinstance(text, str):
        raise PromptError(f"The text prompt must be a string, got {type(text).__name__}.")
    boxes, labels = check_exemplars(exemplars, exemplar_labels, (np.inf, np.inf))
    text = (text or "").strip() or None
    if text is None and not len(boxes):
        raise PromptError("No concept given: give a text, exemplar boxes, or both.")
    return {
        "text": text,
        "exemplars": boxes.tolist(),
        "exemplar_labels": labels.tolist(),
        "score_threshold": _check_threshold(score_threshold),
    }


class ConceptBatchRunner:
    """The batch runner's view of a :class:`ConceptSegmenter`: ``generate`` -> masks."""

    def __init__(
        self, model: Any, tile_shape: Any = None, halo: Any = None, **settings: Any
    ) -> None:
        self.segmenter = ConceptSegmenter(model)
        self.tiling = {"tile_shape": tile_shape, "halo": halo}
        self.settings = settings

    def generate(self, image, progress=None, contrast_limits=None) -> np.ndarray:
        """(N, H, W) masks of the concept's instances in ``image``, highest score first."""
        s = self.settings
        return self.segmenter.predict(
            image,
            s.get("text"),
            s.get("exemplars"),
            s.get("exemplar_labels"),
            score_threshold=s.get("score_threshold", 0.5),
            contrast_limits=contrast_limits,
            progress=progress,
            **self.tiling,
        ).masks
