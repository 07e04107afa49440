"""The work the widgets hand to a worker thread: plain arrays in, masks out, no layer access.

Everything a job needs is captured on the GUI thread first (the slice's
pixels, the prompts, the model source); the job only talks to the core
(:class:`~napari_sam_keras.SAMPredictor`, the automatic mask generator), and its
result is written into layers back on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..processing.mask_prompts import mask_box, mask_to_low_res_logits
from ..segmentation.prompt_objects import predict_objects as core_predict_objects
from ..segmentation.tile_keys import keep_tiles, take_tiles
from . import layer_stores
from .image_slices import ImageSlice, make_slice
from .prompts_from_layers import SlicePrompts, objects_on_slice
from .tiling_controls import Tiling

#: ``progress(done, total)``, with ``progress.step(text)`` (a task_runner.Progress).
Report = Callable[[int, int], None]

#: Networks that have computed an embedding in this session (the first one compiles).
_WARM: set[str] = set()


def embedding_key(image_slice: ImageSlice, model_key: str) -> tuple:
    """Cache key of a slice's embedding: the slice's pixels and the model."""
    return (*image_slice.key, model_key)


def _step(report, text: str) -> None:
    step = getattr(report, "step", None)
    if step is not None:
        step(text)


def load_network(models, source: str, report):
    """The network for ``source``, naming the step when it must be loaded first."""
    if source not in models:
        _step(report, "loading the model (an official checkpoint is converted the first time)")
    return models.get(source)


def embed_tiled(predictor, image_slice: ImageSlice, cache, tiling: Tiling, report=None) -> None:
    """Give ``predictor`` the slice cut into tiles; the tiles ``cache`` holds are taken from it.

    The other tiles are embedded when a prompt needs them (put them into the
    cache with :func:`keep_slice_tiles` afterwards).  Their cache keys hold the
    tiling (:func:`~napari_sam_keras.segmentation.precompute.tile_key`): an
    untiled embedding of the slice is never used for a tile.  The embeddings
    folder is not used for tiled slices.
    """
    tile_shape, halo = tiling
    _step(report, f"cutting the image into tiles of {tile_shape} (halo {halo})")
    predictor.set_image(
        image_slice.data,
        contrast_limits=image_slice.contrast_limits,
        tile_shape=tile_shape,
        halo=halo,
    )
    if cache is not None:
        take_tiles(predictor.tiles, cache, embedding_key(image_slice, predictor.network.key))


def keep_slice_tiles(predictor, image_slice: ImageSlice, cache) -> None:
    """Put the tile embeddings the predictor computed for the slice into ``cache``."""
    if cache is not None and predictor.tiles is not None:
        keep_tiles(predictor.tiles, cache, embedding_key(image_slice, predictor.network.key))
        _WARM.add(predictor.network.key)


def embed(predictor, image_slice: ImageSlice, cache, report=None, where: str = "") -> bool:
    """Give ``predictor`` the slice's embedding; True if it was computed.

    From ``cache`` (memory), else from the layer's store in the embeddings
    folder (:mod:`.layer_stores`), else computed (and written to that store).
    """
    key = embedding_key(image_slice, predictor.network.key)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        predictor.set_embedding(cached)
        return False
    stored = layer_stores.store_for(image_slice, predictor.network)
    if stored is not None and stored[0].is_complete(stored[1], 0):
        _step(report, f"{where}reading the image embedding from the embeddings folder")
    elif report is not None:
        first = "" if predictor.network.key in _WARM else " (the first one compiles the network)"
        _step(report, f"{where}computing the image embedding{first}")
    if stored is None:
        predictor.set_image(image_slice.data, contrast_limits=image_slice.contrast_limits)
    else:
        predictor.set_embedding(layer_stores.stored_or_computed(predictor, image_slice, *stored))
    _WARM.add(predictor.network.key)
    if cache is not None:
        cache.put(key, predictor.embedding_state())
    return True


def predict_objects(
    predictor, image_slice: ImageSlice, prompts: SlicePrompts, multimask: bool = True
) -> list[np.ndarray]:
    """One full-resolution (H, W) boolean mask per object in ``prompts``.

    The predictor must hold the slice's embedding; the prompts are mapped to
    the slice's resolution level, and the masks back to full resolution.
    """
    objects = [
        obj.mapped(image_slice.to_level_xy, image_slice.boxes_to_level)
        for obj in objects_on_slice(prompts)
    ]
    results = core_predict_objects(predictor, objects, multimask=multimask)
    return [image_slice.to_full_resolution(mask) for mask, _ in results]


def _predictor_for(network, predictors: dict):
    from .. import TiledSAMPredictor as SAMPredictor  # whole slices, or tiled ones

    predictor = predictors.get(network.key)
    if predictor is None:
        predictor = predictors.setdefault(network.key, SAMPredictor(network))
    return predictor


@dataclass(frozen=True, eq=False)
class PromptJob:
    """Segment the prompts on one slice (interactive widget)."""

    image_slice: ImageSlice
    prompts: SlicePrompts | None
    model_source: str
    multimask: bool = True
    embed_only: bool = False
    tiling: Tiling = None  # (tile shape, halo): the slice is cut into tiles

    def __call__(self, models, predictors: dict, cache, report: Report) -> list[np.ndarray]:
        total = 2 if self.embed_only else 3
        report(0, total)
        network = load_network(models, self.model_source, report)
        report(1, total)
        predictor = _predictor_for(network, predictors)
        if self.tiling is None:
            embed(predictor, self.image_slice, cache, report)
        else:
            embed_tiled(predictor, self.image_slice, cache, self.tiling, report)
        report(2, total)
        if self.embed_only:
            if self.tiling is not None:
                _step(report, "embedding every tile")
                predictor.embed_tiles()
                keep_slice_tiles(predictor, self.image_slice, cache)
            return []
        tiles = "" if self.tiling is None else " (embedding the tiles it needs)"
        _step(report, f"predicting the mask{tiles}")
        masks = predict_objects(predictor, self.image_slice, self.prompts, self.multimask)
        keep_slice_tiles(predictor, self.image_slice, cache)
        report(3, total)
        return masks


def level_mask(image_slice: ImageSlice, mask: np.ndarray) -> np.ndarray:
    """A full-resolution 2D mask sampled (nearest) at the slice's pyramid level."""
    mask = np.asarray(mask, bool)
    h, w = image_slice.data.shape[:2]
    if mask.shape == (h, w):
        return mask
    rows = np.minimum(
        ((np.arange(h) + 0.5) * image_slice.downsample[0]).astype(int), mask.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(w) + 0.5) * image_slice.downsample[1]).astype(int), mask.shape[1] - 1
    )
    return mask[np.ix_(rows, cols)]


@dataclass(frozen=True, eq=False)
class RefineJob:
    """Refine one existing label on a slice: its mask as SAM's mask input, plus its box.

    Points on the slice (``prompts``, may be ``None``) are added to the prompt.
    """

    image_slice: ImageSlice
    label_mask: np.ndarray
    prompts: SlicePrompts | None
    model_source: str

    def __call__(self, models, predictors: dict, cache, report: Report) -> list[np.ndarray]:
        report(0, 3)
        network = load_network(models, self.model_source, report)
        report(1, 3)
        predictor = _predictor_for(network, predictors)
        embed(predictor, self.image_slice, cache, report)
        report(2, 3)
        _step(report, "refining the label")
        mask = level_mask(self.image_slice, self.label_mask)
        config = predictor.network.config
        logits = mask_to_low_res_logits(
            mask,
            predictor.embedding_state().input_size,
            config.image_size,
            config.low_res_mask_size,
        )
        kwargs = {"box": mask_box(mask).astype(np.float32), "mask_input": logits}
        prompts = self.prompts
        if prompts is not None and len(prompts.points_xy):
            kwargs["point_coords"] = self.image_slice.to_level_xy(prompts.points_xy)
            kwargs["point_labels"] = prompts.point_labels
        refined, _score = predictor.predict_best(**kwargs, multimask_output=False)
        report(3, 3)
        return [self.image_slice.to_full_resolution(np.asarray(refined, bool))]


#: The automatic widget's methods.
GENERATOR = "automatic mask generator"
DECODER = "instance decoder"


@dataclass(frozen=True, eq=False)
class AutomaticJob:
    """Segment everything on one or more slices of an image layer.

    ``method`` is :data:`GENERATOR` (SAM's automatic mask generator, options
    ``generator_options``) or :data:`DECODER` (the model's instance decoder,
    thresholds ``decoder_options``).  With ``link`` (``{"iou_threshold": ...,
    "min_slices": ...}``) the slices' 2D labels are linked along the last
    hidden axis into 3D objects (:func:`~napari_sam_keras.link_slices`).
    """

    layer: object
    indices: Sequence[tuple]
    slice_axes: tuple[int, int]
    model_source: str
    generator_options: dict
    max_side: int | None = None
    method: str = GENERATOR
    decoder_options: dict = field(default_factory=dict)
    link: dict | None = None
    tiling: Tiling = None  # generator mode: (tile shape, halo), tiles segmented like crops
    #: generator mode: candidate masks each threshold rejected, summed over the slices
    dropped: dict = field(default_factory=dict)

    def __call__(self, models, cache, report: Report) -> list[tuple[object, np.ndarray]]:
        """``[(where, label_image)]``: per slice, or per linked stack of slices (3D)."""
        n = len(self.indices)
        report(0, 0)
        network = self._network(models, report)
        segment = self._method(network)
        results = []
        steps = 1000
        for k, index in enumerate(self.indices):

            def progress(done: int, total: int, k=k) -> None:
                fraction = done / total if total else 0.0
                report(int((k + min(fraction, 1.0)) * steps), n * steps)

            where = f"slice {k + 1} of {n}: " if n > 1 else ""
            report(k * steps, n * steps)
            image_slice = make_slice(self.layer, index, self.slice_axes, self.max_side)
            label_image = segment(image_slice, cache, report, where, progress)
            results.append((image_slice, image_slice.to_full_resolution(label_image)))
        if self.link is not None and n > 1:
            _step(report, "linking the slices into 3D objects")
            results = linked_pieces(results, self.slice_axes, **self.link)
        report(n * steps, n * steps)
        return results

    def _network(self, models, report):
        return load_network(models, self.model_source, report)

    def _method(self, network):
        """``segment(image_slice, cache, report, where, progress) -> (h, w) labels``."""
        from .. import InstanceSegmenter, SAMAutomaticMaskGenerator, SAMPredictor, masks_to_labels

        predictor = SAMPredictor(network, warm_up=self.method == GENERATOR)
        if self.method == DECODER:
            segmenter = InstanceSegmenter(network, predictor=predictor)

            def decode(image_slice, cache, report, where, progress):
                # the slice's embedding from (or into) the cache the interactive widget shares
                embed(predictor, image_slice, cache, report, where)
                _step(report, f"{where}running the instance decoder")
                labels = segmenter.segment(predictor.embedding_state(), **self.decoder_options)
                progress(1, 1)
                return labels

            return decode
        if self.tiling is not None:
            tile_shape, halo = self.tiling
            tiled = SAMAutomaticMaskGenerator(
                predictor, tile_shape=tile_shape, halo=halo, **self.generator_options
            )

            def generate_tiled(image_slice, cache, report, where, progress):
                # the generator embeds each tile itself (not kept in the shared cache)
                _step(report, f"{where}generating masks tile by tile ({tile_shape}, halo {halo})")
                records = tiled.generate(
                    image_slice.data,
                    progress=progress,
                    contrast_limits=image_slice.contrast_limits,
                )
                _WARM.add(network.key)
                self._count_dropped(tiled)
                return masks_to_labels(records, shape=image_slice.data.shape[:2])

            return generate_tiled
        generator = SAMAutomaticMaskGenerator(predictor, **self.generator_options)

        def generate(image_slice, cache, report, where, progress):
            embed(predictor, image_slice, cache, report, where)
            _step(report, f"{where}generating masks")
            records = generator.generate(
                image_slice.data,
                progress=progress,
                contrast_limits=image_slice.contrast_limits,
                embedding=predictor.embedding_state(),
            )
            self._count_dropped(generator)
            return masks_to_labels(records, shape=image_slice.data.shape[:2])

        return generate

    def _count_dropped(self, generator) -> None:
        for name, count in generator.dropped.items():
            self.dropped[name] = self.dropped.get(name, 0) + count


def linked_pieces(
    results: Sequence[tuple[ImageSlice, np.ndarray]],
    slice_axes: tuple[int, int],
    iou_threshold: float,
    min_slices: int = 1,
) -> list[tuple[tuple, np.ndarray]]:
    """Per-slice 2D labels -> 3D pieces linked along the last hidden axis.

    Slices that share their index on the other hidden axes (the same time
    point of a (T, Z, Y, X) layer) form one stack; each stack's labels are
    linked with :func:`~napari_sam_keras.link_slices` and returned as
    ``(index, labels)`` with ``None`` on the slice axes and the linked axis,
    the labels' axes in the layer's order.
    """
    from .. import link_slices

    hidden = [a for a, i in enumerate(results[0][0].index) if i is not None]
    axis = max(hidden)
    groups: dict[tuple, list[tuple[int, np.ndarray]]] = {}
    for image_slice, labels in results:
        index = image_slice.index
        key = tuple(None if a == axis else i for a, i in enumerate(index))
        groups.setdefault(key, []).append((int(index[axis]), labels))
    pieces = []
    position = sorted([axis, *slice_axes]).index(axis)
    for key, slices in groups.items():
        slices.sort(key=lambda item: item[0])
        if [z for z, _ in slices] != list(range(results[0][0].spatial_shape[axis])):
            raise ValueError("linking needs every slice along the linked axis")
        linked = link_slices(np.stack([labels for _, labels in slices]), iou_threshold, min_slices)
        pieces.append((key, np.moveaxis(linked, 0, position)))
    return pieces
