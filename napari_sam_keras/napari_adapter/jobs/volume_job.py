"""The worker's half of "Segment in 3D": one object carried through a stack, or tracked in time.

A :class:`VolumeJob` holds plain values captured on the GUI thread (the
displayed slice's location, the propagation axis, the prompts per position);
it reads the stack from the layer's array, runs
:func:`~napari_sam_keras.segment_volume` or
:func:`~napari_sam_keras.track_object`, and returns the (N, H, W) boolean mask,
N along the propagation axis.  Slice embeddings go through the session's
memory under the same keys as the 2D path (:func:`.slice_embedding.embedding_key`
of each slice), so a slice embedded by a click, the live preview or the
automatic widget is not embedded again, and the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..layers.image_slices import ImageSlice
from .slice_embedding import embedding_key
from .steps import Report, load_network, predictor_for, step


@dataclass(frozen=True, eq=False)
class VolumeJob:
    """Carry one object along ``axis`` of an image layer (``track``: forward in time).

    Attributes:
        image_slice: the displayed slice: the layer, its two slice axes, its
            index on every other axis (those stay fixed), level and contrast limits.
        axis: the layer axis the object is carried along (a hidden axis).
        data: the layer's data array (full resolution), read on the worker.
        prompts: ``{position along axis: {"point_coords", "point_labels", "box"}}``,
            in full-resolution pixels (x, y) of that slice.
        model_source: the model, as the model field gives it.
        projection, iou_threshold: as in :func:`~napari_sam_keras.segment_volume`.
        track: use :func:`~napari_sam_keras.track_object` (a time axis).
        tiling: (tile shape, halo): every slice is cut into tiles, or None.
    """

    image_slice: ImageSlice
    axis: int
    data: object
    prompts: dict
    model_source: str
    projection: str = "mask"
    iou_threshold: float = 0.5
    track: bool = False
    tiling: tuple[int, int] | None = None

    @property
    def length(self) -> int:
        """Positions along the propagation axis."""
        return int(self.image_slice.spatial_shape[self.axis])

    @property
    def stack_axes(self) -> tuple[int, ...]:
        """The three layer axes of the stack, ascending (propagation axis and slice axes)."""
        return tuple(sorted((self.axis, *self.image_slice.slice_axes)))

    @property
    def stack_index(self) -> tuple[int | None, ...]:
        """The layer index of the stack: ``None`` on :attr:`stack_axes`, fixed elsewhere."""
        return tuple(None if a == self.axis else i for a, i in enumerate(self.image_slice.index))

    def slice_at(self, position: int) -> ImageSlice:
        """The location of slice ``position`` along the axis (for keys and prompt lookup).

        Only its location fields (layer, index, axes, level, contrast limits)
        describe that slice; ``data`` is still the displayed slice's pixels.
        """
        index = list(self.image_slice.index)
        index[self.axis] = int(position)
        return replace(self.image_slice, index=tuple(index))

    def read_stack(self) -> np.ndarray:
        """(N, H, W) or (N, H, W, C): the stack along the axis, other axes fixed."""
        region = tuple(slice(None) if i is None else int(i) for i in self.stack_index)
        stack = np.asarray(self.data[region])
        return np.moveaxis(stack, self.stack_axes.index(self.axis), 0)

    def to_layer_order(self, masks: np.ndarray) -> np.ndarray:
        """(N, H, W) masks -> the stack's axes in layer order (for :attr:`stack_index`)."""
        return np.moveaxis(masks, 0, self.stack_axes.index(self.axis))

    def __call__(self, models, predictors: dict, session, report: Report) -> np.ndarray:
        from ... import segment_volume, track_object

        report(0, 0)
        network = load_network(models, self.model_source, report)
        predictor = predictor_for(network, predictors)
        step(report, "reading the stack")
        stack = self.read_stack()
        unit = "frame" if self.track else "slice"
        cold = network.key not in session.warm

        def progress(done: int, total: int) -> None:
            if done < total:
                note = " (the first embedding compiles the network)" if cold and not done else ""
                verb = "tracking" if self.track else "carrying the object"
                step(report, f"{verb}: {unit} {done + 1} of {total}{note}")
            report(done, total)

        def key(position: int):
            return embedding_key(self.slice_at(position), network.key)

        options = {
            "projection": self.projection,
            "iou_threshold": float(self.iou_threshold),
            "embeddings": session.embeddings,
            "progress": progress,
            "contrast_limits": self.image_slice.contrast_limits,
        }
        if self.tiling is not None:
            options["tile_shape"], options["halo"] = self.tiling
        if self.track:
            masks = track_object(predictor, stack, self.prompts, frame_key=key, **options)
        else:
            masks = segment_volume(predictor, stack, self.prompts, slice_key=key, **options)
        session.warm.add(network.key)
        return masks
