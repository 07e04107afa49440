"""Automatic SAM segmentation: every object of the slice (or of every slice), no prompts.

Runs :class:`~napari_sam_keras.SAMAutomaticMaskGenerator` (or, for a model
with an instance decoder, :class:`~napari_sam_keras.InstanceSegmenter`: the
**mode**) on the displayed slice, or on every slice of an nD image, in a
background thread with a progress bar, and writes one new label per object
into the target Labels layer (created on first use).  In every-slice mode the
slices' objects can be linked into 3D objects (one label each).  Existing
labels are kept unless *overwrite* is ticked; the whole result is one undo
step; Cancel leaves the labels unchanged.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ImageError, SAMError
from ...processing.instance_watershed import settings_for_model
from ...segmentation.generator_settings import DEFAULTS, few_objects_hint
from ...segmentation.generator_settings import settings_for_model as generator_settings_for_model
from ..background.safe_import import ml_stack_ready
from ..background.task_runner import Relay
from ..jobs.automatic_job import DECODER, GENERATOR, AutomaticJob
from ..layers.image_slices import (
    DEFAULT_MAX_SIDE,
    all_slice_indices,
    check_supported,
    current_index,
    displayed_layer_axes,
    spatial_shape,
)
from ..layers.labels_writing import write_label_images
from ..layers.target_labels import LabelsTarget
from ..widget_parts.notifications import USER_ERRORS, report_warning
from ..widget_parts.sections import lay_out
from ..widget_parts.widget_base import SAMWidget
from .automatic_controls import (
    MODE_TIP,
    NOT_LOADED_TIP,
    AutomaticControls,
    automatic_controls,
    no_decoder_tip,
)
from .concept_mode import ConceptJob, read_exemplars

if TYPE_CHECKING:
    import napari


class AutomaticSegmentationWidget(SAMWidget):
    """Segment everything on the displayed slice (or every slice) with SAM (dock widget).

    Value widgets: ``image``, ``labels`` (target; none = create one), ``model``,
    ``mode`` (:data:`GENERATOR` or, for a loaded model with a decoder,
    :data:`DECODER`), the generator's ``points_per_side``, ``pred_iou_thresh``,
    ``stability_score_thresh``, ``box_nms_thresh``, ``min_mask_region_area``,
    ``tile_shape`` (0: off) and ``halo`` (generator mode: tiles segmented like
    crops, merged by non-maximum suppression), the decoder's ``center_distance_threshold``, ``boundary_distance_threshold``,
    ``foreground_threshold``, ``distance_smoothing``, ``min_size``,
    ``all_slices``, ``link_slices``, ``link_iou``, ``min_slices``, ``overwrite``.
    Buttons: ``run_button``, ``cancel_button``.

    The generator's controls show the settings a loaded model recommends
    (:func:`~napari_sam_keras.segmentation.generator_settings.settings_for_model`);
    a run that finds few objects names the threshold to loosen in the status line.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer | None = None) -> None:
        super().__init__(napari_viewer)
        viewer = self.viewer
        self._plane = ""
        #: Every control, a typed attribute (also reachable as ``widget.<name>``).
        self.controls: AutomaticControls = automatic_controls(viewer)
        c = self.controls
        lay_out(
            self,
            c.sections(self.model_picker, self.embeddings_picker),
            c.footer(self.cancel_button, self.status),
        )
        self.target = LabelsTarget(viewer, self.controls.labels, tuple, self.reset_choices)
        self._decoder_model: str | None = None  # whose default thresholds are shown
        self._generator_model: str | None = None  # whose generator defaults are shown
        self._generator_shown = DEFAULTS
        self._loaded_relay = Relay(self._update_mode)  # model loads reported from any thread
        self.session.models.on_loaded(self._on_model_loaded)
        self.controls.run_button.changed.connect(self._on_run_clicked)
        self.controls.image.changed.connect(self._on_image_changed)
        self.controls.mode.changed.connect(self._show_mode)
        self.controls.concept.enable.changed.connect(self._show_mode)
        self.controls.all_slices.changed.connect(self.controls.linking.follow)
        self.model_picker.field.changed.connect(self._update_mode)
        self.model_picker.on_chosen(self._on_model_chosen)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        self.reset_choices()
        self.follow_active_image(self.controls.image)
        self._on_image_changed()
        self.controls.linking.follow(False)
        self._update_mode()
        self._show_mode()

    # --- the mode ---------------------------------------------------------------------

    def _on_model_loaded(self, _source: str) -> None:
        self._loaded_relay.changed.emit()  # any thread -> _update_mode on the GUI thread

    def _loaded_network(self):
        try:
            source = self.model_picker.source()
        except SAMError:
            return None
        return self.model_store.loaded(source)

    def _update_mode(self, _value=None) -> None:
        """Offer the instance decoder only when the chosen model is loaded and has one."""
        if not self.alive():
            return
        network = self._loaded_network()
        if network is not None and self._generator_model != network.key:
            self._show_generator_defaults(network)
        decoder = getattr(network, "instance_decoder", None)
        if decoder is None:
            self.controls.mode.value = GENERATOR
            self.controls.mode.enabled = False
            self.controls.mode.tooltip = (
                NOT_LOADED_TIP if network is None else no_decoder_tip(str(network.name))
            )
            return
        self.controls.mode.enabled = True
        self.controls.mode.tooltip = MODE_TIP
        if self._decoder_model != network.key:  # a new model: show its default thresholds
            self._decoder_model = network.key
            self.controls.decoder.show_settings(settings_for_model(network.name))

    def _show_generator_defaults(self, network) -> None:
        """A new model: show the generator settings it recommends (values the user changed
        stay)."""
        self._generator_model = network.key
        try:
            own = generator_settings_for_model(network)
        except SAMError as error:
            self.user_error(error)
            own = DEFAULTS
        self._generator_shown = self.controls.generator.show_defaults(own, self._generator_shown)

    def _show_mode(self, _value=None) -> None:
        concept = self.controls.concept.on  # "find all like the examples" replaces the mode
        decoder = self.controls.mode.value == DECODER and not concept
        self.controls.mode.visible = not concept
        self.controls.concept.show(concept)
        for widget in self.controls.generator.widgets:
            widget.visible = not decoder and not concept
        self.controls.tiling.visible = (
            not decoder and not concept
        )  # the instance decoder is not tiled
        for widget in self.controls.decoder.widgets:
            widget.visible = decoder
        self.controls.run_button.text = (
            "Find all like the examples" if concept else "Segment everything"
        )

    def _on_model_chosen(self) -> None:
        """A model was chosen: load it now (in the background), so the mode can be offered."""
        self._update_mode()
        if self.controls.concept.on:  # a SAM 3 is loaded by the concept job
            return
        if self._loaded_network() is None and not self.busy and ml_stack_ready():
            self.load_model()

    def load_model(self, blocking: bool = False):
        """Load the chosen model (for the mode choice); returns the network when blocking."""
        try:
            source = self.model_picker.source()
        except USER_ERRORS as error:
            self.user_error(error)
            return None

        def job(report):
            report(0, 1)
            return self.model_store.get(source)

        def done(network):
            self.remember_model(source)
            self.status.show(f"loaded {network.name}")
            self._update_mode()
            return network

        if blocking:
            network = self.runner.run(job, "SAM: loading the model")
            return None if network is None else done(network)
        self.runner.start(job, "SAM: loading the model", done)
        return None

    def _on_image_changed(self, _value=None) -> None:
        """Propose a target; link slices by default for a (Z, Y, X) image."""
        self._propose_target()
        image = self.controls.image.value
        if image is not None:
            self.controls.linking.link.value = len(spatial_shape(image)) == 3
            if len(spatial_shape(image)) > 2:
                self.controls.volume_section.expand()  # a stack: every slice, linked, is likely wanted

    def _on_layers_changed(self, event=None) -> None:
        if not self.alive():
            return
        self.reset_choices()
        self._propose_target()

    def _propose_target(self, _value=None) -> None:
        """The Labels layer already used for the image, when none (that fits) is chosen."""
        self.target.propose(self.controls.image.value)

    # --- preparing --------------------------------------------------------------------

    def generator_options(self) -> dict:
        """The generator's options as shown."""
        return self.controls.generator.options()

    def _prepare(self) -> AutomaticJob:
        image = self.controls.image.value
        if image is None:
            raise ImageError(
                "No image layer to segment: open an image (or File > Open Sample > SAM Keras) "
                "and choose it in the 'image' box."
            )
        check_supported(image)
        axes = displayed_layer_axes(image, self.viewer.dims)
        self._plane = plane_text(image, axes)
        if self.controls.all_slices.value:
            indices = list(all_slice_indices(image, axes))
        else:
            indices = [current_index(image, self.viewer.dims, axes)]
        labels = self.controls.labels.value
        if labels is not None and tuple(labels.data.shape) != spatial_shape(image):
            raise ImageError(
                f"Labels layer {labels.name!r} has shape {tuple(labels.data.shape)} but image "
                f"{image.name!r} has {spatial_shape(image)}: choose a labels layer of the same "
                "shape, or none to create one."
            )
        if self.controls.concept.on:
            return self._concept_job(image, axes, indices)
        method = self.controls.mode.value
        return AutomaticJob(
            layer=image,
            indices=indices,
            slice_axes=axes,
            model_source=self.model_picker.source(),
            generator_options=self.generator_options(),
            max_side=DEFAULT_MAX_SIDE,
            method=method,
            decoder_options=self.controls.decoder.options() if method == DECODER else {},
            link=self.controls.linking.options() if len(indices) > 1 else None,
            tiling=self.controls.tiling.tiling() if method == GENERATOR else None,
        )

    def _concept_job(self, image, axes, indices) -> ConceptJob:
        """SAM 3 on the slice(s), prompted by the exemplar boxes of the displayed slice."""
        index = current_index(image, self.viewer.dims, axes)
        boxes, labels = read_exemplars(
            self.controls.concept.exemplars.value, image, index, axes, self.viewer.dims.point
        )
        job = ConceptJob(
            layer=image,
            indices=indices,
            slice_axes=axes,
            model_source=self.model_picker.source(),
            generator_options={},
            max_side=DEFAULT_MAX_SIDE,
            link=self.controls.linking.options() if len(indices) > 1 else None,
            text=str(self.controls.concept.text.value).strip() or None,
            exemplars=boxes,
            exemplar_labels=labels,
            score_threshold=float(self.controls.concept.threshold.value),
        )
        job.check()
        return job

    # --- running --------------------------------------------------------------------

    def _description(self, job: AutomaticJob) -> str:
        n = len(job.indices)
        where = f"{n} slices" if n > 1 else "this slice"
        if isinstance(job, ConceptJob):
            return f"SAM 3: finding all like the examples on {where}{self._plane}"
        how = " with the instance decoder" if job.method == DECODER else ""
        return f"SAM: segmenting everything on {where}{how}{self._plane}"

    def _job_and_description(self):
        job = self._prepare()
        return job, partial(job, self.model_store, self.session), self._description(job)

    def _on_run_clicked(self, _value=None) -> None:
        if self.busy:
            return
        try:
            job, call, description = self._job_and_description()
        except USER_ERRORS as error:
            self.user_error(error)
            return
        if ml_stack_ready():
            self.runner.start(call, description, partial(self._write, job))

    def _on_busy(self, busy: bool) -> None:
        super()._on_busy(busy)
        self.controls.run_button.enabled = not busy
        if not busy:
            self._update_mode()  # a run may have loaded the model

    def run(self):
        """Segment now (blocking; for scripts); returns the Labels layer or ``None``."""
        self.runner.wait()
        try:
            job, call, description = self._job_and_description()
        except USER_ERRORS as error:
            self.user_error(error)
            return None
        if not ml_stack_ready():
            return None
        results = self.runner.run(call, description)
        return None if results is None else self._write(job, results)

    def _write(self, job: AutomaticJob, results):
        image = job.layer
        if image not in self.viewer.layers:
            self.user_error(f"Image {image.name!r} was removed; nothing written.")
            return None
        if not any(np.any(label_image) for _, label_image in results):
            message = f"SAM found no objects{self._plane}; nothing was written."
            hint = self._few_objects_hint(job, 0) or "Try lower thresholds."
            report_warning(f"{message} {hint}")
            self.status.show(f"{message} {hint}")
            return None
        try:
            labels = self.target.for_writing(image)
            ids = write_label_images(labels, results, overwrite=bool(self.controls.overwrite.value))
        except SAMError as error:
            self.user_error(error)
            return None
        self.remember_model(job.model_source)
        if not ids:
            self.user_error(
                "Every object found overlaps existing labels only; nothing was written. Tick "
                "'overwrite existing labels' to replace them."
            )
            return labels
        linked = " (3D objects, linked through the slices)" if job.link is not None else ""
        hint = self._few_objects_hint(job, len(ids))
        self.status.show(
            f"wrote {len(ids)} object(s){linked} into {labels.name!r}"
            + (f". {hint}" if hint else "")
        )
        return labels

    @staticmethod
    def _few_objects_hint(job: AutomaticJob, found: int) -> str:
        """Which generator setting to loosen when few objects were found ("" otherwise)."""
        if job.method != GENERATOR or isinstance(job, ConceptJob):
            return ""
        return few_objects_hint(found, job.dropped, job.generator_options)


def plane_text(image, axes: tuple[int, int]) -> str:
    """``""`` for the image's own (last two) axes; else which plane a rolled view shows."""
    shape = spatial_shape(image)
    last_two = (len(shape) - 2, len(shape) - 1)
    if tuple(axes) == last_two:
        return ""
    r, c = axes
    return (
        f" (the view is rolled: the {shape[r]} x {shape[c]} plane of axes {r} and {c}; roll the "
        "axes back to segment the image's own planes)"
    )
