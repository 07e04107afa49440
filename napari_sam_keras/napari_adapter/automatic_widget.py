"""Automatic SAM segmentation: every object of the slice (or of every slice), no prompts.

Runs :class:`~napari_sam_keras.SAMAutomaticMaskGenerator` on the displayed
slice, or on every slice of an nD image, in a background thread with a
progress bar, and writes one new label per mask into the target Labels layer
(created on first use).  Existing labels are kept unless *overwrite* is
ticked; the whole result is one undo step; Cancel leaves the labels unchanged.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels

from ..errors import ImageError, SAMError
from .image_slices import (
    DEFAULT_MAX_SIDE,
    all_slice_indices,
    check_supported,
    current_index,
    displayed_layer_axes,
    spatial_shape,
)
from .labels_writing import create_labels_layer, write_label_images
from .layer_choices import SAMContainer, layer_combo, resolve_viewer
from .loaded_models import ModelStore, model_field, shared_embedding_cache, source_text
from .notifications import USER_ERRORS, report_error, report_outcome, report_warning
from .safe_import import ml_stack_ready
from .segmentation_jobs import AutomaticJob
from .task_runner import Task

if TYPE_CHECKING:
    import napari


class AutomaticSegmentationWidget(SAMContainer):
    """Segment everything on the displayed slice (or every slice) with SAM (dock widget).

    Value widgets: ``image``, ``labels`` (target; none = create one), ``model``,
    ``points_per_side``, ``pred_iou_thresh``, ``stability_score_thresh``,
    ``box_nms_thresh``, ``min_mask_region_area``, ``all_slices``, ``overwrite``.
    Buttons: ``run_button``, ``cancel_button``.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer | None = None) -> None:
        super().__init__(labels=True)
        viewer = self.viewer = resolve_viewer(napari_viewer)
        self.model_store = ModelStore()
        self.embedding_cache = shared_embedding_cache()
        self._task: Task | None = None

        self._image_w = layer_combo(viewer, "image", Image, tooltip="The image to segment.")
        self._labels_w = layer_combo(
            viewer,
            "labels",
            Labels,
            nullable=True,
            label="labels (target)",
            tooltip="Where objects are written; none: a new Labels layer is made.",
        )
        self._model_w = model_field()
        self._pps_w = SpinBox(
            name="points_per_side",
            value=32,
            min=1,
            max=128,
            tooltip="Grid of points per image side; more finds smaller objects, slower.",
        )
        self._iou_w = FloatSpinBox(
            name="pred_iou_thresh",
            value=0.88,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Keep masks whose predicted quality is at least this.",
        )
        self._stab_w = FloatSpinBox(
            name="stability_score_thresh",
            value=0.95,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Keep masks that change little when the threshold moves.",
        )
        self._nms_w = FloatSpinBox(
            name="box_nms_thresh",
            value=0.7,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip="Drop masks whose box overlaps a better one by more than this IoU.",
        )
        self._area_w = SpinBox(
            name="min_mask_region_area",
            value=0,
            min=0,
            max=10_000_000,
            tooltip="Remove holes and islands smaller than this many pixels (0: off).",
        )
        self._all_w = CheckBox(name="all_slices", value=False, text="every slice (nD images)")
        self._overwrite_w = CheckBox(
            name="overwrite", value=False, text="overwrite existing labels"
        )
        self._run_w = PushButton(name="run_button", text="Segment everything")
        self._cancel_w = PushButton(name="cancel_button", text="Cancel", enabled=False)
        self._status_w = Label(name="status", value="")
        self.extend(
            [
                self._image_w,
                self._labels_w,
                self._model_w,
                self._pps_w,
                self._iou_w,
                self._stab_w,
                self._nms_w,
                self._area_w,
                self._all_w,
                self._overwrite_w,
                self._run_w,
                self._cancel_w,
                self._status_w,
            ]
        )
        self._run_w.changed.connect(self._on_run_clicked)
        self._cancel_w.changed.connect(self.cancel)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        self.reset_choices()
        active = viewer.layers.selection.active
        if isinstance(active, Image):
            self._image_w.value = active

    # --- preparing --------------------------------------------------------------------

    def generator_options(self) -> dict:
        return {
            "points_per_side": int(self._pps_w.value),
            "pred_iou_thresh": float(self._iou_w.value),
            "stability_score_thresh": float(self._stab_w.value),
            "box_nms_thresh": float(self._nms_w.value),
            "min_mask_region_area": int(self._area_w.value),
        }

    def _prepare(self) -> AutomaticJob:
        image = self._image_w.value
        if image is None:
            raise ImageError(
                "No image layer to segment: open an image (or File > Open Sample > SAM Keras) "
                "and choose it in the 'image' box."
            )
        check_supported(image)
        axes = displayed_layer_axes(image, self.viewer.dims)
        if self._all_w.value:
            indices = list(all_slice_indices(image, axes))
        else:
            indices = [current_index(image, self.viewer.dims, axes)]
        labels = self._labels_w.value
        if labels is not None and tuple(labels.data.shape) != spatial_shape(image):
            raise ImageError(
                f"Labels layer {labels.name!r} has shape {tuple(labels.data.shape)} but image "
                f"{image.name!r} has {spatial_shape(image)}: choose a labels layer of the same "
                "shape, or none to create one."
            )
        return AutomaticJob(
            layer=image,
            indices=indices,
            slice_axes=axes,
            model_source=source_text(self._model_w.value),
            generator_options=self.generator_options(),
            max_side=DEFAULT_MAX_SIDE,
        )

    # --- running ----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._task is not None

    def _set_task(self, task: Task | None) -> None:
        self._task = task
        self._cancel_w.enabled = task is not None
        self._run_w.enabled = task is None
        if task is not None:
            self._status_w.value = task.description
        elif self._status_w.value.startswith("SAM: segmenting"):
            self._status_w.value = ""

    def cancel(self, _value=None) -> None:
        """Stop the running generation; nothing is written."""
        if self._task is not None:
            self._task.cancel()

    def _description(self, job: AutomaticJob) -> str:
        n = len(job.indices)
        return f"SAM: segmenting everything ({n} slices)" if n > 1 else "SAM: segmenting everything"

    def _on_run_clicked(self, _value=None) -> None:
        if self.busy:
            return
        try:
            job = self._prepare()
        except USER_ERRORS as error:
            report_error(error)
            return
        if not ml_stack_ready():
            return
        task = Task(
            partial(job, self.model_store, self.embedding_cache),
            self._description(job),
            on_done=partial(self._write, job),
            on_error=report_outcome,
            on_finished=partial(self._set_task, None),
        )
        self._set_task(task)
        task.start()

    def run(self):
        """Segment now (blocking; for scripts); returns the Labels layer or ``None``."""
        if self._task is not None:
            self._task.wait()
        try:
            job = self._prepare()
        except USER_ERRORS as error:
            report_error(error)
            return None
        if not ml_stack_ready():
            return None
        task = Task(partial(job, self.model_store, self.embedding_cache), self._description(job))
        self._set_task(task)
        try:
            results = task.run()
        except BaseException as error:
            report_outcome(error)
            return None
        finally:
            self._set_task(None)
        return self._write(job, results)

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until the background job has finished (GUI events keep flowing)."""
        task = self._task
        return True if task is None else task.wait(timeout)

    def _write(self, job: AutomaticJob, results):
        image = job.layer
        if image not in self.viewer.layers:
            report_error(f"Image {image.name!r} was removed; nothing written.")
            return None
        if not any(np.any(label_image) for _, label_image in results):
            report_warning("SAM found no objects; nothing was written. Try lower thresholds.")
            self._status_w.value = "no objects found"
            return None
        try:
            labels = self._labels_w.value
            if labels is None or labels not in self.viewer.layers:
                active = self.viewer.layers.selection.active
                labels = create_labels_layer(self.viewer, image, name=f"{image.name} SAM labels")
                self.reset_choices()
                self._labels_w.value = labels
                if active is not None and active in self.viewer.layers:
                    self.viewer.layers.selection.active = active
            ids = write_label_images(labels, results, overwrite=bool(self._overwrite_w.value))
        except SAMError as error:
            report_error(error)
            return None
        if not ids:
            report_warning(
                "Every object found overlaps existing labels only; nothing was written. Tick "
                "'overwrite existing labels' to replace them."
            )
        self._status_w.value = f"wrote {len(ids)} object(s) into {labels.name!r}"
        return labels
