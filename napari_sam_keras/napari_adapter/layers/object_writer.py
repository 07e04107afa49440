"""Writing what the interactive widget segmented into its target Labels layer.

Three kinds of result: the objects of the prompts on one slice, one object
carried through a stack (Segment in 3D), and a refined label.  Each is one
undo step, never over existing labels unless **overwrite** is ticked, and a
write that changes nothing says why in the status line.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...errors import SAMError
from ..widget_parts.notifications import report_warning
from .label_refinement import write_refined
from .labels_writing import write_label_images, write_masks
from .prompt_requests import PromptRequest
from .target_labels import TargetLabels
from .volume_requests import VolumeRequest

ALL_LABELLED = (
    "The segmented pixels all carry labels already; nothing was written. Tick "
    "'overwrite existing labels' to replace them."
)


class ObjectWriter:
    """Writes results into the target layer and reports through the widget.

    Args:
        viewer: the napari viewer.
        target: the widget's :class:`~.target_labels.TargetLabels`.
        overwrite, add_to_label: the widget's check boxes.
        status: the widget's status line.
        user_error: shows a user error (status line + notification).
        written: ``written(request, message)`` after a successful write (tidies prompts).
    """

    def __init__(
        self,
        viewer,
        target: TargetLabels,
        overwrite,
        add_to_label,
        status,
        user_error: Callable,
        written: Callable[[PromptRequest, str], None],
    ) -> None:
        self.viewer = viewer
        self.target = target
        self.overwrite = overwrite
        self.add_to_label = add_to_label
        self.status = status
        self.user_error = user_error
        self.written = written

    def masks(self, request: PromptRequest, masks):
        """Write the objects of a slice's prompts; return the Labels layer (None: nothing)."""
        image_slice = request.image_slice
        if self._image_gone(image_slice) or self._empty(
            any(np.any(m) for m in masks), "SAM returned an empty mask"
        ):
            return None
        try:
            target = self.target.for_writing(image_slice.layer)
            xy = request.first_positive_point()
            first = self.target.first_id(target, image_slice, xy, bool(self.add_to_label.value))
            ids = write_masks(target, image_slice, masks, bool(self.overwrite.value), first)
        except SAMError as error:
            self.user_error(error)
            return None
        if not ids:
            self.user_error(ALL_LABELLED)
            return target
        self.written(request, f"wrote label(s) {', '.join(map(str, ids))} into {target.name!r}")
        return target

    def volume(self, request: VolumeRequest, masks):
        """Write the object of a 3D run with one id on every slice it reaches (one undo step)."""
        job = request.job
        reached = np.flatnonzero(np.asarray(masks).any(axis=(1, 2)))
        if self._image_gone(job.image_slice) or self._empty(
            len(reached) > 0, "SAM returned an empty mask on every slice"
        ):
            return None
        try:
            target = self.target.for_writing(job.image_slice.layer)
            if request.first_positive is not None:
                position, xy = request.first_positive
                first = self.target.first_id(
                    target, job.slice_at(position), xy, bool(self.add_to_label.value)
                )
            else:
                first = self.target.first_id(target, job.image_slice, None, False)
            piece = job.to_layer_order(np.asarray(masks, np.uint8))
            ids = write_label_images(
                target, [(job.stack_index, piece)], bool(self.overwrite.value), first
            )
        except SAMError as error:
            self.user_error(error)
            return None
        if not ids:
            self.user_error(ALL_LABELLED)
            return target
        unit = "frame" if job.track else "slice"
        where = f"{reached[0]}" if len(reached) == 1 else f"{reached[0]}-{reached[-1]}"
        self.written(
            request,
            f"wrote label {ids[0]} into {target.name!r} on {len(reached)} {unit}(s) of "
            f"{request.axis_name} ({where})",
        )
        return target

    def refined(self, request: PromptRequest, masks):
        """Replace the refined label by the new mask (that label only)."""
        try:
            done = write_refined(self.viewer, request, masks, bool(self.overwrite.value))
        except SAMError as error:
            self.user_error(error)
            return None
        self.written(request, done)
        return request.signature[1]

    def _image_gone(self, image_slice) -> bool:
        if image_slice.layer in self.viewer.layers:
            return False
        self.user_error(f"Image {image_slice.layer.name!r} was removed; nothing written.")
        return True

    def _empty(self, anything: bool, what: str) -> bool:
        if anything:
            return False
        report_warning(f"{what}; nothing was written.")
        self.status.show(f"{what}; nothing was written")
        return True
