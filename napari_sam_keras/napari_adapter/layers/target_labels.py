"""The widgets' target Labels layer: proposed, checked, created, and which ids go into it.

:class:`LabelsTarget` (both widgets):

* Proposed: the Labels layer already used for the image (see
  :func:`~.layer_pickers.labels_layer_for`), so a second widget or a new
  session writes where the first one did instead of stacking a new layer.
* Checked before a write (shape, not multiscale); created on first write when there is
  none, without stealing the active layer.

:class:`TargetLabels` (the interactive widget) adds the ids:

* Ids: **new label id** shows the next free id; a different id typed in is
  used for the next object (an existing one: the object joins it); **add to
  the label under the first positive point** takes the id found there.
* **label to refine** follows the layer's selected label (its label picker).
"""

from __future__ import annotations

from collections.abc import Callable

from .active_layer import keeping_active_layer
from .labels_writing import check_labels_fit, create_labels_layer, label_under, next_free_label
from .layer_pickers import labels_layer_for, needs_target, sam_labels_name


class LabelsTarget:
    """The ``labels`` picker of a widget: which Labels layer its results go into."""

    def __init__(self, viewer, picker, exclude: Callable[[], tuple], reset_choices) -> None:
        self.viewer = viewer
        self.picker = picker
        self.exclude = exclude
        self.reset_choices = reset_choices

    @property
    def layer(self):
        """The chosen target (``None``: one is made on first write)."""
        return self.picker.value

    def propose(self, image) -> None:
        """Choose the Labels layer already used for ``image`` when none (that fits) is chosen."""
        if needs_target(self.viewer, self.layer, image):
            proposed = labels_layer_for(self.viewer, image, self.exclude())
            if proposed is not None or self.layer is not None:
                self.picker.value = proposed

    def for_writing(self, image):
        """The target for the ``image`` layer: checked, or created when there is none."""
        target = self.layer
        if target is not None and target in self.viewer.layers:
            check_labels_fit(target, image)
            return target
        with keeping_active_layer(self.viewer):
            target = create_labels_layer(self.viewer, image, name=sam_labels_name(image))
            self.reset_choices()
            self.picker.value = target
        return target


class TargetLabels(LabelsTarget):
    """Keeps ``labels`` (picker), ``label_id`` and ``refine_id`` (spin boxes) in step."""

    def __init__(
        self,
        viewer,
        picker,
        label_id,
        refine_id,
        exclude: Callable[[], tuple],
        reset_choices: Callable[[], None],
    ) -> None:
        super().__init__(viewer, picker, exclude, reset_choices)
        self.label_id = label_id
        self.refine_id = refine_id
        self._proposed_id = 1
        self._watched = None
        picker.changed.connect(self._on_changed)

    def first_id(self, target, image_slice, first_positive_xy, add_to_label: bool) -> int | None:
        """The id of the first object to write (``None``: the next free one)."""
        if add_to_label and first_positive_xy is not None:
            under = label_under(target, image_slice, first_positive_xy)
            if under:
                return under
        chosen = int(self.label_id.value)
        return None if chosen == self._proposed_id else chosen

    def update_ids(self) -> None:
        """Propose the next free id again (after a write, or another target)."""
        target = self.layer
        self._proposed_id = next_free_label(target) if target is not None else 1
        self.label_id.value = self._proposed_id

    def _on_changed(self, target=None) -> None:
        if self._watched is not None:
            events = self._watched.events
            events.selected_label.disconnect(self._on_selected_label)
            events.paint.disconnect(self._on_painted)
            events.data.disconnect(self._on_painted)
            self._watched = None
        if target is not None:
            target.events.selected_label.connect(self._on_selected_label)
            target.events.paint.connect(self._on_painted)  # a brush stroke, a fill
            target.events.data.connect(self._on_painted)  # new data
            self._watched = target
        self.update_ids()

    def _on_painted(self, event=None) -> None:
        if int(self.label_id.value) == self._proposed_id:  # not a choice of the user's
            self.update_ids()

    def _on_selected_label(self, event=None) -> None:
        if self._watched is not None:
            self.refine_id.value = max(1, int(self._watched.selected_label))
