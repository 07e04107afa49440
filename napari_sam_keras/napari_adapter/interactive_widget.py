"""Interactive SAM segmentation: points and boxes in, labels out.

Prompts live in a Points layer (positive/negative via its ``label`` feature)
and a Shapes layer (rectangles are boxes, one object per box).  On an nD image
only the prompts on the displayed slice are used, the embedding is that
slice's, and the result goes into that slice only.

* **Segment** (``run_button``, or :meth:`InteractiveSegmentationWidget.run` in
  scripts) segments the current prompts, writes each object with the next free
  label id into the target Labels layer (created on first use) and clears the
  prompts it used.
* **Live preview** re-predicts whenever a point is added, moved or deleted and
  shows the result in a separate ``SAM preview`` layer; **Commit** (button,
  or ``C`` on the prompt layers) writes it into the target layer.
* ``T`` on the points layer toggles positive/negative for new points.

Embeddings are cached per (image layer, slice, model), so returning to a slice
is instant.  Nothing overwrites existing labels unless *overwrite* is ticked,
and every write is one undo step of the Labels layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, Label, PushButton, RadioButtons
from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtCore import QTimer

from ..errors import ImageError, SAMError
from ..segmentation.labels import masks_to_labels
from .image_slices import ImageSlice, current_slice
from .labels_writing import check_labels_fit, create_labels_layer, write_masks
from .layer_choices import SAMContainer, layer_combo, named, resolve_viewer
from .loaded_models import ModelStore, model_field, shared_embedding_cache, source_text
from .notifications import USER_ERRORS, report_error, report_outcome, report_warning
from .prompt_layer_setup import (
    BOXES_NAME,
    POINTS_NAME,
    add_boxes_layer,
    add_points_layer,
    set_point_type,
)
from .prompts_from_layers import (
    NEGATIVE,
    POINT_TYPES,
    POSITIVE,
    NoPromptsError,
    SlicePrompts,
    objects_on_slice,
    prompts_on_slice,
)
from .safe_import import ml_stack_ready
from .segmentation_jobs import PromptJob
from .task_runner import Task

if TYPE_CHECKING:
    import napari

PREVIEW_NAME = "SAM preview"
TOGGLE_KEY = "t"
COMMIT_KEY = "c"
_DATA_DONE = {"added", "changed", "removed"}


@dataclass(eq=False)
class _Request:
    """A job plus what is needed to write its result back and tidy up."""

    job: PromptJob
    signature: tuple
    points_layer: object = None
    shapes_layer: object = None
    used_points: np.ndarray | None = None
    used_shapes: tuple = ()


@dataclass(eq=False)
class _Preview:
    request: _Request
    masks: list


class InteractiveSegmentationWidget(SAMContainer):
    """Point/box-prompted SAM segmentation of the displayed slice (dock widget).

    Value widgets: ``image``, ``points``, ``shapes``, ``labels`` (target; none =
    create one), ``model`` (preset name or file), ``point_type``, ``multimask``,
    ``overwrite``, ``live``.  Buttons: ``run_button``, ``commit_button``,
    ``cancel_button``.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer | None = None) -> None:
        super().__init__(labels=True)
        viewer = self.viewer = resolve_viewer(napari_viewer)
        self.model_store = ModelStore()
        self.embedding_cache = shared_embedding_cache()
        self._predictors: dict = {}
        self._task: Task | None = None
        self._queued = None
        self._preview: _Preview | None = None
        self._preview_layer = None
        self._preview_region = None
        self._suppress_live = False
        self._watched: dict[str, object] = {}
        self._last_step = tuple(viewer.dims.current_step)

        self._image_w = layer_combo(viewer, "image", Image, tooltip="The image to segment.")
        self._points_w = layer_combo(
            viewer,
            "points",
            Points,
            nullable=True,
            tooltip="Point prompts; the 'label' feature says positive or negative.",
        )
        self._shapes_w = layer_combo(
            viewer,
            "shapes",
            Shapes,
            nullable=True,
            tooltip="Box prompts: each rectangle is one object (other shapes: their bounding box).",
        )
        self._labels_w = layer_combo(
            viewer,
            "labels",
            Labels,
            nullable=True,
            label="labels (target)",
            exclude=lambda: (self._preview_layer,) if self._preview_layer is not None else (),
            tooltip="Where objects are written; none: a new Labels layer is made on first use.",
        )
        self._model_w = model_field()
        self._point_type_w = RadioButtons(
            name="point_type",
            label="new points",
            choices=list(POINT_TYPES),
            value=POSITIVE,
            orientation="horizontal",
            tooltip=f"Press '{TOGGLE_KEY.upper()}' on the points layer to switch.",
        )
        self._multimask_w = CheckBox(
            name="multimask",
            value=True,
            text="multimask (keep the best of 3)",
        )
        self._overwrite_w = CheckBox(
            name="overwrite",
            value=False,
            text="overwrite existing labels",
        )
        self._live_w = CheckBox(
            name="live",
            value=False,
            text="live preview on every point change",
        )
        self._run_w = PushButton(name="run_button", text="Segment prompts")
        self._commit_w = PushButton(
            name="commit_button", text=f"Commit preview [{COMMIT_KEY.upper()}]"
        )
        self._cancel_w = PushButton(name="cancel_button", text="Cancel", enabled=False)
        self._status_w = Label(name="status", value="")
        self.extend(
            [
                self._image_w,
                self._points_w,
                self._shapes_w,
                self._labels_w,
                self._model_w,
                self._point_type_w,
                self._multimask_w,
                self._overwrite_w,
                self._live_w,
                self._run_w,
                self._commit_w,
                self._cancel_w,
                self._status_w,
            ]
        )

        self._run_w.changed.connect(self._on_run_clicked)
        self._commit_w.changed.connect(self.commit)
        self._cancel_w.changed.connect(self.cancel)
        self._image_w.changed.connect(self._on_image_changed)
        self._points_w.changed.connect(self._watch_prompt_layers)
        self._shapes_w.changed.connect(self._watch_prompt_layers)
        self._point_type_w.changed.connect(self._on_point_type_changed)
        self._live_w.changed.connect(self._on_live_toggled)
        self._multimask_w.changed.connect(self._on_live_input_changed)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        viewer.dims.events.current_step.connect(self._on_slice_changed)

        self.reset_choices()
        active = viewer.layers.selection.active
        if isinstance(active, Image):
            self._image_w.value = active
        self._setup_prompt_layers()

    # --- layers -----------------------------------------------------------------------

    def _on_layers_changed(self, event=None) -> None:
        self.reset_choices()
        if self._preview_layer is not None and self._preview_layer not in self.viewer.layers:
            self._preview_layer = None
            self._preview = None

    def _on_image_changed(self, image=None) -> None:
        self._clear_preview()
        # not inside the layer-list event that changed the choice: add layers afterwards
        QTimer.singleShot(0, self._setup_prompt_layers)

    def _setup_prompt_layers(self) -> None:
        """Choose the prompt layers for the chosen image, once: ours by name, or new ones.

        Other Points/Shapes layers (annotations) are never taken as prompts
        unless chosen in the drop-downs.
        """
        try:
            image = self._image_w.value
        except RuntimeError:  # the widget was closed before a deferred call
            return
        if image is None:
            return
        viewer = self.viewer
        active = viewer.layers.selection.active
        if self._shapes_w.value is None:
            shapes = named(viewer, Shapes, BOXES_NAME) or add_boxes_layer(viewer, image)
            self.reset_choices()
            self._shapes_w.value = shapes
        if self._points_w.value is None:
            points = named(viewer, Points, POINTS_NAME) or add_points_layer(viewer, image)
            self.reset_choices()
            self._points_w.value = points
            active = points
        if active is not None and active in viewer.layers:
            viewer.layers.selection.active = active
        self._watch_prompt_layers()

    def _watch_prompt_layers(self, _value=None) -> None:
        """Follow data events of the chosen prompt layers and bind the shortcuts."""
        for key, widget in (("points", self._points_w), ("shapes", self._shapes_w)):
            old, new = self._watched.get(key), widget.value
            if old is new:
                continue
            if old is not None:
                old.events.data.disconnect(self._on_prompt_data)
            if new is not None:
                new.events.data.connect(self._on_prompt_data)
                new.bind_key(COMMIT_KEY, self._commit_key, overwrite=True)
                if key == "points":
                    new.bind_key(TOGGLE_KEY, self._toggle_key, overwrite=True)
                    if "label" in new.features.columns or self._point_type_w.value != POSITIVE:
                        set_point_type(new, self._point_type_w.value)
            self._watched[key] = new

    def _commit_key(self, layer=None) -> None:
        self.commit()

    def _toggle_key(self, layer=None) -> None:
        self.toggle_point_type()

    def toggle_point_type(self) -> str:
        """Switch new points between positive and negative; returns the new type."""
        new = NEGATIVE if self._point_type_w.value == POSITIVE else POSITIVE
        self._point_type_w.value = new
        return new

    def _on_point_type_changed(self, value) -> None:
        points = self._points_w.value
        if points is not None:
            set_point_type(points, value)

    # --- preparing a job (GUI thread) ---------------------------------------------------

    def _image_slice(self) -> ImageSlice:
        image = self._image_w.value
        if image is None:
            raise ImageError(
                "No image layer to segment: open an image (or File > Open Sample > SAM Keras) "
                "and choose it in the 'image' box."
            )
        return current_slice(image, self.viewer.dims)

    def _prompts(self, image_slice: ImageSlice) -> SlicePrompts:
        return prompts_on_slice(
            self._points_w.value, self._shapes_w.value, image_slice, self.viewer.dims.point
        )

    def _prepare(self, embed_only: bool = False) -> _Request:
        """Everything a job needs, read from the layers now; raises SAMError for user errors."""
        image_slice = self._image_slice()
        labels = self._labels_w.value
        if labels is not None:
            if labels is self._preview_layer:
                raise ImageError("The preview layer cannot be the target; choose another one.")
            check_labels_fit(labels, image_slice)
        source = source_text(self._model_w.value)
        prompts = None if embed_only else self._prompts(image_slice)
        if prompts is not None:
            objects_on_slice(prompts)  # a user error is reported before loading anything
        job = PromptJob(
            image_slice=image_slice,
            prompts=prompts,
            model_source=source,
            multimask=bool(self._multimask_w.value),
            embed_only=embed_only,
        )
        request = _Request(job=job, signature=self._signature(image_slice, prompts, source))
        if prompts is not None:
            points, shapes = self._points_w.value, self._shapes_w.value
            request.points_layer, request.shapes_layer = points, shapes
            if points is not None and len(prompts.point_rows):
                request.used_points = np.array(points.data[prompts.point_rows], copy=True)
            if shapes is not None and len(prompts.shape_rows):
                request.used_shapes = tuple(
                    np.array(shapes.data[i], copy=True) for i in prompts.shape_rows
                )
        return request

    def _signature(self, image_slice: ImageSlice, prompts, source: str) -> tuple:
        """What the result depends on: the slice, the model, the options and the prompts."""
        prompt_key = None if prompts is None else prompts.signature()
        return (*image_slice.key, source, bool(self._multimask_w.value), prompt_key)

    # --- running jobs -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._task is not None

    def _job_call(self, request: _Request):
        return partial(request.job, self.model_store, self._predictors, self.embedding_cache)

    def _start(self, request: _Request, description: str, on_done) -> Task | None:
        if not ml_stack_ready():
            return None
        task = Task(
            self._job_call(request),
            description,
            on_done=on_done,
            on_error=report_outcome,
            on_finished=self._on_task_finished,
        )
        self._set_task(task)
        task.start()
        return task

    def _set_task(self, task: Task | None) -> None:
        previous, self._task = self._task, task
        self._cancel_w.enabled = task is not None
        if task is not None:
            self._status_w.value = task.description
        elif previous is not None and self._status_w.value == previous.description:
            self._status_w.value = ""

    def _on_task_finished(self) -> None:
        self._set_task(None)
        queued, self._queued = self._queued, None
        if queued is not None:
            queued()

    def cancel(self, _value=None) -> None:
        """Stop the running job (its result is not written) and drop queued ones."""
        self._queued = None
        if self._task is not None:
            self._task.cancel()

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until no job is running or queued (GUI events keep flowing)."""
        import time

        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        app = QApplication.instance()
        while (self._task is not None or self._queued is not None) and time.monotonic() < end:
            if self._task is None and self._queued is not None:
                queued, self._queued = self._queued, None
                queued()
                continue
            app.processEvents()
            time.sleep(0.01)
        return self._task is None and self._queued is None

    # --- segment and write ------------------------------------------------------------

    def _on_run_clicked(self, _value=None) -> None:
        if self.busy:
            self._queued = self._run_async
            return
        self._run_async()

    def _run_async(self) -> None:
        try:
            request = self._prepare()
        except USER_ERRORS as error:
            report_error(error)
            return
        self._start(request, "SAM: segmenting", partial(self._write, request))

    def run(self):
        """Segment the current prompts now and write them (blocking; for scripts).

        Returns the target Labels layer, or ``None`` when nothing was written (a
        user error, shown as a notification, or a cancel).
        """
        if self._task is not None:
            self._task.wait()
        self._queued = None
        try:
            request = self._prepare()
        except USER_ERRORS as error:
            report_error(error)
            return None
        if not ml_stack_ready():
            return None
        task = Task(self._job_call(request), "SAM: segmenting")
        self._set_task(task)
        try:
            masks = task.run()
        except BaseException as error:
            report_outcome(error)
            return None
        finally:
            self._set_task(None)
            self._queued = None  # whatever the GUI asked meanwhile concerned these prompts
        return self._write(request, masks)

    def commit(self, _value=None):
        """Write the live preview into the target labels (segmenting first if it is stale).

        Returns the Labels layer when written now, else ``None`` (a segmentation
        was started, or a user error was reported).
        """
        if self.busy:
            self._queued = self.commit
            return None
        try:
            request = self._prepare()
        except USER_ERRORS as error:
            report_error(error)
            return None
        preview = self._preview
        if preview is not None and preview.request.signature == request.signature:
            return self._write(request, preview.masks)
        self._start(request, "SAM: segmenting", partial(self._write, request))
        return None

    def _target_labels(self, image_slice: ImageSlice):
        labels = self._labels_w.value
        if labels is not None and labels in self.viewer.layers:
            check_labels_fit(labels, image_slice)
            return labels
        active = self.viewer.layers.selection.active
        labels = create_labels_layer(
            self.viewer, image_slice.layer, name=f"{image_slice.layer.name} SAM labels"
        )
        self.reset_choices()
        self._labels_w.value = labels
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return labels

    def _write(self, request: _Request, masks):
        """Write masks into the target labels, tidy prompts and preview; return the layer."""
        image_slice = request.job.image_slice
        if image_slice.layer not in self.viewer.layers:
            report_error(f"Image {image_slice.layer.name!r} was removed; nothing written.")
            return None
        if not any(np.any(m) for m in masks):
            report_warning("SAM returned an empty mask; nothing was written.")
            return None
        try:
            labels = self._target_labels(image_slice)
            ids = write_masks(labels, image_slice, masks, overwrite=bool(self._overwrite_w.value))
        except SAMError as error:
            report_error(error)
            return None
        if not ids:
            report_warning(
                "The segmented pixels all carry labels already; nothing was written. Tick "
                "'overwrite existing labels' to replace them."
            )
            return labels
        self._status_w.value = f"wrote label(s) {', '.join(map(str, ids))} into {labels.name!r}"
        self._remove_used_prompts(request)
        self._clear_preview()
        return labels

    def _remove_used_prompts(self, request: _Request) -> None:
        self._suppress_live = True
        try:
            points = request.points_layer
            if (
                points is not None
                and request.used_points is not None
                and points in self.viewer.layers
            ):
                data = np.asarray(points.data)
                if data.shape[1:] == request.used_points.shape[1:] and len(data):
                    hit = (np.abs(data[:, None, :] - request.used_points[None]) < 1e-9).all(-1)
                    rows = set(np.flatnonzero(hit.any(1)).tolist())
                    if rows:
                        points.selected_data = rows
                        points.remove_selected()
            shapes = request.shapes_layer
            if shapes is not None and request.used_shapes and shapes in self.viewer.layers:
                rows = {
                    i
                    for i, verts in enumerate(shapes.data)
                    if any(
                        v.shape == verts.shape and np.allclose(v, verts)
                        for v in request.used_shapes
                    )
                }
                if rows:
                    shapes.selected_data = rows
                    shapes.remove_selected()
        finally:
            self._suppress_live = False

    # --- live preview -----------------------------------------------------------------

    def _on_prompt_data(self, event=None) -> None:
        action = getattr(event, "action", None)
        if action is not None and str(getattr(action, "value", action)) not in _DATA_DONE:
            return
        if self._suppress_live or not self._live_w.value:
            return
        self.request_preview()

    def _on_live_input_changed(self, _value=None) -> None:
        if self._live_w.value:
            self.request_preview()

    def _on_live_toggled(self, on: bool) -> None:
        if not on:
            self._clear_preview()
            return
        self.request_preview(prefetch=True)

    def _on_slice_changed(self, event=None) -> None:
        step = tuple(self.viewer.dims.current_step)
        if step == self._last_step:
            return
        self._last_step = step
        self._clear_preview()
        if self._live_w.value:
            self.request_preview()

    def request_preview(self, prefetch: bool = False) -> None:
        """Predict the current prompts into the preview layer (in the background)."""
        if self.busy:
            if self._queued is None or self._queued == self.request_preview:
                self._queued = self.request_preview
            return
        try:
            request = self._prepare()
        except NoPromptsError:
            self._clear_preview()
            if prefetch:
                self._prefetch_embedding()
            return
        except USER_ERRORS as error:
            self._clear_preview()
            report_error(error)
            return
        self._start(request, "SAM: live preview", partial(self._show_preview, request))

    def _prefetch_embedding(self) -> None:
        """Compute the current slice's embedding ahead of the first point (live mode)."""
        try:
            request = self._prepare(embed_only=True)
        except USER_ERRORS:
            return
        self._start(request, "SAM: computing the image embedding", lambda _masks: None)

    def _preview_layer_for(self, image_slice: ImageSlice):
        layer = self._preview_layer
        shape = tuple(image_slice.spatial_shape)
        if layer is not None and layer in self.viewer.layers and layer.data.shape == shape:
            return layer
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        active = self.viewer.layers.selection.active
        image = image_slice.layer
        layer = self.viewer.add_labels(
            np.zeros(shape, dtype=np.uint8),
            name=PREVIEW_NAME,
            scale=tuple(image.scale),
            translate=tuple(image.translate),
            opacity=0.5,
        )
        self._preview_layer = layer
        self.reset_choices()
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return layer

    def _show_preview(self, request: _Request, masks) -> None:
        image_slice = request.job.image_slice
        if image_slice.layer not in self.viewer.layers:
            return
        layer = self._preview_layer_for(image_slice)
        self._erase_preview_pixels(refresh=False)  # one refresh below shows both changes
        label_image = np.clip(
            masks_to_labels(list(masks), shape=image_slice.shape2d, overlap="first"), 0, 255
        )
        layer.data[image_slice.region] = label_image.astype(np.uint8)
        self._preview_region = image_slice.region
        self._preview = _Preview(request=request, masks=masks)
        layer.refresh()

    def _erase_preview_pixels(self, refresh: bool = True) -> None:
        layer = self._preview_layer
        if layer is not None and self._preview_region is not None and layer in self.viewer.layers:
            layer.data[self._preview_region] = 0
            if refresh:
                layer.refresh()
        self._preview_region = None

    def _clear_preview(self) -> None:
        self._preview = None
        self._erase_preview_pixels()

    @property
    def preview_layer(self):
        """The Labels layer showing the live preview (``None`` until the first preview)."""
        return self._preview_layer
