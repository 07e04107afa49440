"""Interactive SAM segmentation: points and boxes in, labels out.

Prompts live in a Points layer (positive/negative via its ``label`` feature)
and a Shapes layer (rectangles are boxes, one object per box).  On an nD image
only the prompts on the displayed slice are used, the embedding is that
slice's, and the result goes into that slice only.

* **Segment prompts** (``run_button``, or :meth:`InteractiveSegmentationWidget.run`
  in scripts) writes each object with a new label id into the target Labels
  layer (created on first use) and clears the prompts it used.  The first
  object takes **new label id** (the next free one unless chosen), or, with
  **add to the label under the first positive point**, that label.
* **Live preview** re-predicts whenever the prompts change (see
  :mod:`.live_preview`); **Commit** (button, or ``C``) writes it.
* **Refine label** uses a label of the target layer (from any tool) as the
  prompt: its mask as SAM's mask input, its box, and the points on the slice;
  the result replaces that label only.
* **Segment in 3D** (``Shift+S``) on a stack: the prompts on one or more slices
  of the slider axis the user is on make one object, carried through the
  stack (tracked forward on a time axis) and written with one new id on every
  slice it reaches, as one undo step (see :mod:`..layers.volume_requests`).
* **Clear prompts** (``Shift+C``) deletes every prompt; ``T`` toggles new points
  between positive and negative.

The widget follows the active image layer, keeps the prompt layers above
every other layer, and keeps the last error in its status line.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from qtpy.QtCore import QTimer

from ..background.prefetch import Prefetcher
from ..background.safe_import import ml_stack_ready
from ..background.task_runner import process_events_until
from ..layers.image_slices import spatial_shape
from ..layers.label_refinement import refine_request
from ..layers.labels_writing import check_labels_fit
from ..layers.layer_order import raise_layers
from ..layers.object_writer import ObjectWriter
from ..layers.prompt_layer_setup import PromptLayers, set_point_type
from ..layers.prompt_requests import (
    PromptRequest,
    clear_layer,
    image_slice_of,
    note_used,
    prompt_request,
    read_prompts,
    remove_used_prompts,
)
from ..layers.prompts_from_layers import NEGATIVE, POSITIVE, box_merge_hint
from ..layers.target_labels import TargetLabels
from ..layers.volume_requests import VolumeRequest, volume_request
from ..widget_parts.notifications import USER_ERRORS
from ..widget_parts.sections import lay_out
from ..widget_parts.widget_base import SAMWidget
from .interactive_controls import (
    CLEAR_KEY,
    COMMIT_KEY,
    SEGMENT_3D_KEY,
    TOGGLE_KEY,
    InteractiveControls,
    interactive_controls,
)
from .live_preview import LivePreview

if TYPE_CHECKING:
    import napari


class InteractiveSegmentationWidget(SAMWidget):
    """Point/box-prompted SAM segmentation of the displayed slice (dock widget).

    Value widgets: ``image``, ``points``, ``shapes``, ``labels`` (target; none =
    create one), ``model``, ``point_type``, ``label_id``, ``add_to_label``,
    ``multimask``, ``overwrite``, ``live``, ``refine_id``, ``projection``,
    ``iou_threshold``, ``axis_is_time``.  Buttons: ``run_button``,
    ``commit_button``, ``segment_3d_button``, ``clear_button``,
    ``refine_button``, ``cancel_button``.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer | None = None) -> None:
        super().__init__(napari_viewer)
        self._predictors: dict = {}
        self._build()
        self.prompt_layers = PromptLayers(
            self.viewer,
            self.controls.points,
            self.controls.shapes,
            on_data=self._on_prompt_data,
            keys={
                COMMIT_KEY: lambda _l: self.commit(),
                CLEAR_KEY: lambda _l: self.clear_prompts(),
                SEGMENT_3D_KEY: lambda _l: self._on_segment_3d_clicked(),
            },
            point_keys={TOGGLE_KEY: lambda _l: self.toggle_point_type()},
        )
        self.live_preview = LivePreview(
            self.viewer,
            self.runner,
            make_request=self._prepare,
            start=self._start,
            on_error=self.user_error,
            on_layer=lambda _layer: self._after_layers_added(),
            alive=self.alive,
        )
        self.prefetch = Prefetcher(  # neighbouring slices, after the clicks (see .prefetch)
            self.model_store,
            self.session,
            click_pending=lambda: not self.runner.idle or self.live_preview.pending,
        )
        self.target = TargetLabels(
            self.viewer,
            self.controls.labels,
            self.controls.label_id,
            self.controls.refine_id,
            self._not_targets,
            self.reset_choices,
        )
        self.writer = ObjectWriter(
            self.viewer,
            self.target,
            self.controls.overwrite,
            self.controls.add_to_label,
            self.status,
            self.user_error,
            self._written,
        )
        self._connect()
        self.reset_choices()
        self.follow_active_image(self.controls.image)
        self._setup_for_image()

    def _build(self) -> None:
        #: Every control, a typed attribute (also reachable as ``widget.<name>``).
        self.controls: InteractiveControls = interactive_controls(self.viewer, self._not_targets)
        c = self.controls
        sections = c.sections(self.model_picker, self.embeddings_picker)
        lay_out(self, sections, c.footer(self.cancel_button, self.status))

    def _connect(self) -> None:
        viewer = self.viewer
        self.controls.run_button.changed.connect(self._on_run_clicked)
        self.controls.commit_button.changed.connect(self.commit)
        self.controls.segment_3d_button.changed.connect(self._on_segment_3d_clicked)
        self.controls.clear_button.changed.connect(self.clear_prompts)
        self.controls.refine_button.changed.connect(self._on_refine_clicked)
        self.controls.image.changed.connect(self._on_image_changed)
        self.controls.points.changed.connect(self.prompt_layers.watch)
        self.controls.shapes.changed.connect(self.prompt_layers.watch)
        self.controls.point_type.changed.connect(self._on_point_type_changed)
        inputs = (self.controls.multimask, *self.controls.tiling.widgets)
        self.live_preview.follow(self.controls.live, inputs, viewer.dims)
        self.model_picker.on_chosen(self.live_preview.schedule)  # a new model: preview again
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        viewer.layers.events.removed.connect(self._on_layer_removed)

    def _not_targets(self) -> tuple:
        layer = self.live_preview.layer if hasattr(self, "live_preview") else None
        return () if layer is None else (layer,)

    # --- layers -----------------------------------------------------------------------

    def _on_layer_inserted(self, event=None) -> None:
        if not self.alive():
            return
        self.reset_choices()
        self._propose_target()
        self._after_layers_added()

    def _after_layers_added(self) -> None:
        # not inside the layer-list event: move layers once napari has finished inserting
        QTimer.singleShot(0, self._raise_prompt_layers)

    def _raise_prompt_layers(self) -> None:
        if not self.alive():
            return
        layers = (self.live_preview.layer, self.controls.shapes.value, self.controls.points.value)
        raise_layers(self.viewer, layers)

    def _on_layer_removed(self, event=None) -> None:
        if not self.alive():
            return
        self.reset_choices()
        self.live_preview.forget_removed_layer()

    def _on_image_changed(self, image=None) -> None:
        self.live_preview.clear()
        QTimer.singleShot(0, self._setup_for_image)

    def _setup_for_image(self) -> None:
        if not self.alive() or self.controls.image.value is None:
            return
        self.prompt_layers.setup(self.controls.image.value, self.reset_choices)
        if len(spatial_shape(self.controls.image.value)) > 2:
            self.controls.volume_section.expand()  # a stack: Segment in 3D is what it is for
        if self.controls.point_type.value != POSITIVE and self.controls.points.value is not None:
            set_point_type(self.controls.points.value, self.controls.point_type.value)
        self._propose_target()
        self._raise_prompt_layers()

    def _propose_target(self) -> None:
        self.target.propose(self.controls.image.value)

    # --- prompts ----------------------------------------------------------------------

    def _on_prompt_data(self, event=None) -> None:
        self.live_preview.on_prompt_data(event)
        action = getattr(event, "action", None)
        added = str(getattr(action, "value", action)) == "added"
        if added and getattr(event, "source", None) is self.controls.shapes.value:
            QTimer.singleShot(0, self._hint_box_merge)  # not inside napari's event

    def _hint_box_merge(self) -> None:
        """Say so in the status line when the new box takes earlier points into its object."""
        if not self.alive() or self.controls.image.value is None:
            return
        try:
            image_slice = image_slice_of(self.controls.image.value, self.viewer.dims)
            prompts = read_prompts(
                self.controls.points.value,
                self.controls.shapes.value,
                image_slice,
                self.viewer.dims,
            )
        except USER_ERRORS:
            return  # the next Segment says what is wrong
        hint = box_merge_hint(prompts)
        if hint:
            self.status.show(hint)

    def toggle_point_type(self) -> str:
        """Switch new points between positive and negative; returns the new type."""
        new = NEGATIVE if self.controls.point_type.value == POSITIVE else POSITIVE
        self.controls.point_type.value = new
        return new

    def _on_point_type_changed(self, value) -> None:
        if self.controls.points.value is not None:
            set_point_type(self.controls.points.value, value)

    def clear_prompts(self, _value=None) -> int:
        """Delete every point and box of the prompt layers; returns how many."""
        self.live_preview.cancel()
        with self.live_preview.paused():
            n = clear_layer(self.controls.points.value) + clear_layer(self.controls.shapes.value)
        self.live_preview.clear()
        self.status.show(f"cleared {n} prompt(s)")
        return n

    def _prepare(self, embed_only: bool = False) -> PromptRequest:
        """A request from the layers now; raises ``SAMError`` for what the user must fix."""
        image_slice = image_slice_of(self.controls.image.value, self.viewer.dims)
        target = self.controls.labels.value
        if target is not None:
            check_labels_fit(target, image_slice.layer)
        source = self.model_picker.source()
        prompts = None
        if not embed_only:
            prompts = read_prompts(
                self.controls.points.value,
                self.controls.shapes.value,
                image_slice,
                self.viewer.dims,
            )
        multimask = bool(self.controls.multimask.value)
        tiling = self.controls.tiling.tiling()
        request = prompt_request(image_slice, prompts, source, multimask, embed_only, tiling)
        return note_used(request, self.controls.points.value, self.controls.shapes.value)

    # --- running ----------------------------------------------------------------------

    def _job_call(self, request: PromptRequest):
        job = partial(request.job, self.model_store, self._predictors, self.session)
        if getattr(request.job, "tiling", None) is not None:
            return job  # the prefetch embeds whole slices, which a tiled click does not use
        return self.prefetch.following(job, request.image_slice, request.job.model_source)

    def _start(self, request: PromptRequest, description: str, on_done) -> None:
        if ml_stack_ready():
            self.runner.start(self._job_call(request), description, on_done)

    def _submit(self, prepare, write, description: str, blocking: bool):
        """Prepare (user errors shown), then run now (``blocking``) or in the background."""
        try:
            request = prepare()
        except USER_ERRORS as error:
            self.user_error(error)
            return None
        if not blocking:
            self._start(request, description, partial(write, request))
            return None
        if not ml_stack_ready():
            return None
        masks = self.runner.run(self._job_call(request), description)
        return None if masks is None else write(request, masks)

    def _on_run_clicked(self, _value=None) -> None:
        self.runner.after(
            partial(self._submit, self._prepare, self.writer.masks, "SAM: segmenting", False)
        )

    def run(self):
        """Segment the current prompts now and write them (blocking; for scripts).

        Returns the target Labels layer, or ``None`` when nothing was written (a
        user error, shown in the status line and as a notification, or a cancel).
        """
        self.runner.wait()
        self.live_preview.cancel()
        return self._submit(self._prepare, self.writer.masks, "SAM: segmenting", True)

    def commit(self, _value=None):
        """Write the live preview (segmenting first if it is outdated).

        Returns the Labels layer when written now, else ``None``.
        """
        if self.live_preview.pending and not self.busy:
            self.live_preview.flush()  # the preview asked for starts now; commit after it
        if self.busy:
            self.runner.after(self.commit)
            return None
        preview = self.live_preview.current
        try:
            request = self._prepare()
        except USER_ERRORS as error:
            self.user_error(error)
            return None
        if preview is not None and preview.request.signature == request.signature:
            return self.writer.masks(request, preview.masks)
        self._start(request, "SAM: segmenting", partial(self.writer.masks, request))
        return None

    def _on_refine_clicked(self, _value=None) -> None:
        self.runner.after(partial(self.refine, blocking=False))

    def refine(self, blocking: bool = True):
        """Refine label ``refine_id`` of the target layer on this slice (see the module doc)."""
        self.live_preview.cancel()
        if blocking:
            self.runner.wait()
        return self._submit(self._prepare_refine, self.writer.refined, "SAM: refining", blocking)

    def _on_segment_3d_clicked(self, _value=None) -> None:
        self.runner.after(partial(self.segment_3d, blocking=False))

    def segment_3d(self, blocking: bool = True):
        """Segment in 3D: the prompts on the slices of the slider axis make one object.

        The object is carried through the stack along the slider axis the user
        is on (tracked forward in time on an axis labelled ``t``/``time``, or
        with ``axis_is_time``) and written with one new id on every slice it
        reaches, as one undo step.  Blocking (scripts) returns the target Labels
        layer, or ``None`` when nothing was written; otherwise it runs in the
        background (``wait()`` blocks until done).
        """
        self.live_preview.cancel()
        if blocking:
            self.runner.wait()
        return self._submit(
            self._prepare_volume, self.writer.volume, "SAM: Segment in 3D", blocking
        )

    def _prepare_volume(self) -> VolumeRequest:
        request = volume_request(
            self.controls.image.value,
            self.controls.points.value,
            self.controls.shapes.value,
            self.viewer.dims,
            self.model_picker.source(),
            str(self.controls.projection.value),
            float(self.controls.iou_threshold.value),
            bool(self.controls.axis_is_time.value),
        )
        request.job = replace(request.job, tiling=self.controls.tiling.tiling())
        target = self.controls.labels.value
        if target is not None:
            check_labels_fit(target, request.image_slice.layer)
        return request

    def _prepare_refine(self) -> PromptRequest:
        return refine_request(
            self.controls.image.value,
            self.viewer.dims,
            self.controls.labels.value,
            int(self.controls.refine_id.value),
            self.controls.points.value,
            self.model_picker.source(),
        )

    # --- writing ----------------------------------------------------------------------

    def _written(self, request: PromptRequest, what: str) -> None:
        self.status.show(what)
        self.remember_model(request.job.model_source)
        with self.live_preview.paused():
            remove_used_prompts(self.viewer, request)
        self.live_preview.clear()
        self.target.update_ids()

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until no job runs, waits or is scheduled (GUI events keep flowing)."""
        return process_events_until(
            lambda: self.runner.idle and not self.live_preview.pending, timeout
        )

    @property
    def preview_layer(self):
        """The Labels layer showing the live preview (``None`` until the first preview)."""
        return self.live_preview.layer
