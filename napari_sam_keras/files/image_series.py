"""A folder of images annotated one after the other: where each image's labels are saved,
which images are done, and where the annotator stopped (headless; the napari widget in
``napari_adapter/series_widget.py`` sits on top).

Labels are saved as ``<folder>/sam-labels/<stem>-labels.tif``, the names a batch run
(:func:`~napari_sam_keras.segmentation.batch.segment_batch`) gives its outputs, so the
labels of ``napari-sam-keras batch FOLDER --out FOLDER/sam-labels`` open as the starting
point of each image.  The position and the done images are kept in
``<folder>/sam-labels/series.json``.  Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SAMError
from .atomic_write import atomic_write
from .batch_files import find_inputs, output_names, read_label_output, write_label_output
from .image_files import read_image

LABELS_FOLDER = "sam-labels"
STATE_NAME = "series.json"


class ImageSeries:
    """The images of ``folder`` (sorted), their saved labels, the position and done images.

    Args:
        folder: the images (.tif, .png, .jpg, .npy, ...; not recursive).
        labels_dir: where labels and the state are kept (default ``folder/sam-labels``).
    """

    def __init__(self, folder: str | os.PathLike, labels_dir: str | os.PathLike | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SAMError(f"{self.folder} is not a folder")
        self.labels_dir = Path(labels_dir) if labels_dir else self.folder / LABELS_FOLDER
        self.images, _ = find_inputs([self.folder], exclude=self.labels_dir)
        if not self.images:
            raise SAMError(f"no images in {self.folder}")
        self._label_names = output_names(self.images, "tiff")
        self.index = 0
        self.done: set[str] = set()
        self._load_state()

    # --- position and done images ---------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.labels_dir / STATE_NAME

    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        names = [p.name for p in self.images]
        current = state.get("current")
        if current in names:
            self.index = names.index(current)
        self.done = {name for name in state.get("done", []) if name in names}

    def save_state(self) -> Path:
        """Write the position and the done images (atomically)."""
        self.labels_dir.mkdir(parents=True, exist_ok=True)
        state = {"current": self.current.name, "done": sorted(self.done)}
        with atomic_write(self.state_path) as tmp:
            tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        return self.state_path

    @property
    def current(self) -> Path:
        return self.images[self.index]

    def is_done(self, index: int | None = None) -> bool:
        return self.images[self.index if index is None else index].name in self.done

    def set_done(self, done: bool = True, index: int | None = None) -> None:
        name = self.images[self.index if index is None else index].name
        if done:
            self.done.add(name)
        else:
            self.done.discard(name)

    def neighbour(self, step: int, skip_done: bool = False) -> int | None:
        """The index ``step`` (+1 or -1) images away, skipping done ones if asked; None at
        the end of the series."""
        index = self.index + step
        while 0 <= index < len(self.images):
            if not (skip_done and self.is_done(index)):
                return index
            index += step
        return None

    def go_to(self, index: int) -> None:
        if not 0 <= index < len(self.images):
            raise SAMError(f"image {index} is outside 0..{len(self.images) - 1}")
        self.index = index
        self.save_state()

    # --- images and labels ----------------------------------------------------------------

    def label_path(self, index: int | None = None) -> Path:
        return self.labels_dir / self._label_names[self.index if index is None else index]

    def read_image(self, index: int | None = None) -> np.ndarray:
        return read_image(self.images[self.index if index is None else index])

    def read_labels(self, index: int | None = None) -> np.ndarray | None:
        """The saved labels of an image, or None if there are none yet."""
        path = self.label_path(index)
        return read_label_output(path) if path.exists() else None

    def save_labels(self, labels: np.ndarray, index: int | None = None) -> Path:
        """Save an image's labels (atomically; the smallest unsigned dtype that holds them)."""
        index = self.index if index is None else index
        labels = np.asarray(labels)
        if labels.size and labels.min() < 0:
            raise SAMError("labels must not be negative")
        self.labels_dir.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "annotator": "napari-sam-keras image series",
            "input": os.path.abspath(self.images[index]),
            "objects": int(np.unique(labels[labels > 0]).size),
        }
        return write_label_output(self.label_path(index), labels, record)


def labels_shape(image: np.ndarray) -> tuple[int, ...]:
    """The shape of a label image for ``image``: without its colour axis, if RGB(A)."""
    rgb = image.ndim >= 3 and image.shape[-1] in (3, 4)
    return tuple(image.shape[:-1]) if rgb else tuple(image.shape)
