"""The automatic widget's work: everything on one or more slices (:class:`AutomaticJob`).

SAM's automatic mask generator (optionally tile by tile) or the model's instance
decoder, per slice, or linked along the last hidden axis into 3D objects
(:func:`linked_pieces`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..layers.image_slices import ImageSlice, make_slice
from .slice_embedding import Tiling, set_slice_embedding
from .steps import Report, load_network, step

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

    def __call__(self, models, session, report: Report) -> list[tuple[object, np.ndarray]]:
        """``[(where, label_image)]``: per slice, or per linked stack of slices (3D).

        ``models``: the widget's ``ModelStore``; ``session``: the widgets'
        :class:`~..session.Session` (embeddings shared with the interactive widget).
        """
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
            label_image = segment(image_slice, session, report, where, progress)
            results.append((image_slice, image_slice.to_full_resolution(label_image)))
        if self.link is not None and n > 1:
            step(report, "linking the slices into 3D objects")
            results = linked_pieces(results, self.slice_axes, **self.link)
        report(n * steps, n * steps)
        return results

    def _network(self, models, report):
        return load_network(models, self.model_source, report)

    def _method(self, network):
        """``segment(image_slice, session, report, where, progress) -> (h, w) labels``."""
        from ... import (
            InstanceSegmenter,
            SAMAutomaticMaskGenerator,
            TiledSAMPredictor,
            masks_to_labels,
        )

        predictor = TiledSAMPredictor(network, warm_up=self.method == GENERATOR)
        if self.method == DECODER:
            segmenter = InstanceSegmenter(network, predictor=predictor)

            def decode(image_slice, session, report, where, progress):
                # the slice's embedding from (or into) the memory the interactive widget shares
                set_slice_embedding(predictor, image_slice, session, report, where)
                step(report, f"{where}running the instance decoder")
                labels = segmenter.segment(predictor.embedding_state(), **self.decoder_options)
                progress(1, 1)
                return labels

            return decode
        if self.tiling is not None:
            tile_shape, halo = self.tiling
            tiled = SAMAutomaticMaskGenerator(
                predictor, tile_shape=tile_shape, halo=halo, **self.generator_options
            )

            def generate_tiled(image_slice, session, report, where, progress):
                # the generator embeds each tile itself (not kept in the shared cache)
                step(report, f"{where}generating masks tile by tile ({tile_shape}, halo {halo})")
                records = tiled.generate(
                    image_slice.data,
                    progress=progress,
                    contrast_limits=image_slice.contrast_limits,
                )
                session.warm.add(network.key)
                self._count_dropped(tiled)
                return masks_to_labels(records, shape=image_slice.data.shape[:2])

            return generate_tiled
        generator = SAMAutomaticMaskGenerator(predictor, **self.generator_options)

        def generate(image_slice, session, report, where, progress):
            set_slice_embedding(predictor, image_slice, session, report, where)
            step(report, f"{where}generating masks")
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
    from ... import link_slices

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
