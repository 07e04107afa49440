"""What the Fine-tune widget trains on: the annotated image layers, or an image-series folder.

* Layers: every Image layer with a Labels layer of its shape (the one the widgets write,
  ``"<image> SAM labels"``, else the topmost that fits: :func:`~.layer_pickers.labels_layer_for`),
  each 2D plane that holds at least one object.  Planes are taken as SAM sees them in the
  widgets: RGB uint8 through the layer's contrast limits.
* A folder annotated with the **Image series** widget: each image with saved labels
  (``sam-labels/<name>-labels.tif``, :class:`~napari_sam_keras.files.image_series.ImageSeries`).

Everything is read on the Qt thread (layers) or in the worker (files) into plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import SAMError
from ...files.image_series import ImageSeries
from ...processing.images import to_rgb_uint8
from .image_slices import all_slice_indices, make_slice, spatial_shape
from .layer_pickers import labels_layer_for, named, sam_labels_name

NO_LAYERS = (
    "No training data: no image layer has a Labels layer with objects. Annotate a few "
    "objects with the Interactive segmentation widget (or paint them in a Labels layer of "
    "the image's shape) and try again, or train from an image-series folder."
)


@dataclass
class TrainingData:
    """Images (2D planes) and their instance labels, with a name for each."""

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def add(self, name: str, image: np.ndarray, labels: np.ndarray) -> None:
        self.names.append(name)
        self.images.append(image)
        self.labels.append(labels)

    def objects(self) -> int:
        """How many objects the labels hold in all."""
        return int(sum(np.unique(lab[lab > 0]).size for lab in self.labels))

    def describe(self) -> str:
        """``"3 images, 27 objects: cells, stack z=4, ..."``."""
        if not self.images:
            return "no annotated images"
        names = ", ".join(self.names[:4]) + (", \u2026" if len(self.names) > 4 else "")
        plural = "s" if len(self.images) != 1 else ""
        return f"{len(self.images)} image{plural}, {self.objects()} objects: {names}"


def annotated_layers(viewer, exclude: tuple = ()) -> list[tuple]:
    """``(image layer, labels layer)`` for every Image layer with a Labels layer of its shape.

    Each Labels layer trains one image only: an image's own ``"<image> SAM labels"`` first,
    then, for the others, the topmost unclaimed Labels layer of their shape.
    """
    from napari.layers import Image, Labels

    images = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image) and len(spatial_shape(layer)) >= 2
    ]
    chosen = {}
    for image in images:
        own = named(viewer, Labels, sam_labels_name(image))
        if own is not None and own not in exclude and own.data.shape == spatial_shape(image):
            chosen[id(image)] = own
    for image in images:
        if id(image) not in chosen:
            claimed = tuple(exclude) + tuple(chosen.values())
            labels = labels_layer_for(viewer, image, claimed)
            if labels is not None:
                chosen[id(image)] = labels
    return [(image, chosen[id(image)]) for image in images if id(image) in chosen]


def layer_training_data(viewer, exclude: tuple = ()) -> TrainingData:
    """The annotated planes of the viewer's image layers (see the module docstring)."""
    data = TrainingData()
    for image, labels in annotated_layers(viewer, exclude):
        shape = spatial_shape(image)
        axes = (len(shape) - 2, len(shape) - 1)
        label_data = labels.data
        for index in all_slice_indices(image, axes):
            region = tuple(slice(None) if i is None else i for i in index)
            plane_labels = np.asarray(label_data[region])
            if not plane_labels.any():
                continue
            plane = make_slice(image, index, axes, max_side=None)
            hidden = [f"{i}" for i in index if i is not None]
            name = image.name + (f" [{', '.join(hidden)}]" if hidden else "")
            rgb = to_rgb_uint8(plane.data, plane.contrast_limits)
            data.add(name, rgb, plane_labels.astype(np.int64, copy=False))
    if not data.images:
        raise SAMError(NO_LAYERS)
    return data


def series_training_data(folder: str) -> TrainingData:
    """The images of an image-series folder that have saved labels with objects."""
    series = ImageSeries(folder)
    data = TrainingData()
    for index, path in enumerate(series.images):
        labels = series.read_labels(index)
        if labels is None or not np.any(labels):
            continue
        data.add(path.name, series.read_image(index), labels)
    if not data.images:
        raise SAMError(
            f"No training data: no image of {series.folder} has saved labels with objects "
            f"(in {series.labels_dir}); annotate some with the Image series widget first."
        )
    return data
