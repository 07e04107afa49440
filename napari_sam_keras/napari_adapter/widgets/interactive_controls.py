"""The interactive widget's controls (:class:`InteractiveControls`), built and laid out in one
place; the widget (:mod:`.interactive_widget`) wires them up."""

from __future__ import annotations

from dataclasses import dataclass

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    Label,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.layers import Image, Labels, Points, Shapes

from ...segmentation.volume import PROJECTIONS
from ..layers.labels_writing import OVERWRITE_TIP
from ..layers.layer_pickers import LayerComboBox, layer_combo
from ..layers.prompts_from_layers import POINT_TYPES, POSITIVE
from ..widget_parts.sections import Section
from ..widget_parts.status_line import wrap_text
from ..widget_parts.tiling_controls import TilingControls, tiling_controls
from ..widget_parts.widget_base import row

TOGGLE_KEY = "t"
COMMIT_KEY = "c"
CLEAR_KEY = "Shift-C"
SEGMENT_3D_KEY = "Shift-S"

SHORTCUTS = (
    "Keys on the SAM points/boxes layers: T positive ↔ negative, C commit, Shift+C clear "
    "prompts, Shift+S segment in 3D. Ctrl+Z on the labels layer: undo."
)


@dataclass
class InteractiveControls:
    """Every control of the interactive widget, one typed attribute each.

    A field's name is its control's magicgui name, so scripts reach the same control as
    ``widget.<name>`` and the widget's code as ``self.controls.<name>``.  Adding a control:
    a field here, its construction in :func:`interactive_controls`, its place in
    :meth:`sections`; what it does in the widget (see "Adding a control" in
    ``docs/architecture.md``).
    """

    # the layers
    image: LayerComboBox
    points: LayerComboBox
    shapes: LayerComboBox
    labels: LayerComboBox
    # how prompts are segmented and written
    point_type: RadioButtons
    label_id: SpinBox
    add_to_label: CheckBox
    multimask: CheckBox
    overwrite: CheckBox
    live: CheckBox
    # the actions
    run_button: PushButton
    commit_button: PushButton
    clear_button: PushButton
    refine_id: SpinBox
    refine_button: PushButton
    shortcuts: Label
    # segment in 3D (one object through z, or tracked through time)
    segment_3d_button: PushButton
    projection: ComboBox
    iou_threshold: FloatSpinBox
    axis_is_time: CheckBox
    volume_section: Section
    # tiles
    tiling: TilingControls

    def sections(self, model_picker, embeddings_picker) -> list[Section]:
        """The dock's folding sections, top to bottom."""
        return [
            Section("Image and model", [self.image, model_picker, embeddings_picker]),
            Section(
                "Prompts",
                [self.points, self.shapes, self.point_type, self.live, self.shortcuts],
            ),
            Section("Segment", [self.labels, self.label_id, self.add_to_label, self.multimask]),
            self.volume_section,
            Section(
                "Advanced: tiles, overwrite, refine",
                [*self.tiling.widgets, self.overwrite, self.refine_id, self.refine_button],
                collapsed=True,
                name="advanced",
            ),
        ]

    def footer(self, cancel_button, status) -> list:
        """What stays visible under the sections: the main buttons and the status line."""
        return [
            row(self.run_button, self.commit_button),
            row(self.clear_button, cancel_button),
            row(status),
        ]


def interactive_controls(viewer, exclude_from_targets) -> InteractiveControls:
    """The interactive widget's controls; ``exclude_from_targets()`` names the layers the
    target Labels picker must not offer (the live preview's)."""
    shortcuts = Label(name="shortcuts", value=SHORTCUTS)
    wrap_text(shortcuts)
    shortcuts.native.setStyleSheet("color: #a0a0a0;")
    segment_3d_button = PushButton(
        name="segment_3d_button",
        text="Segment in 3D [Shift+S]",
        tooltip="Carry the object of the prompts through the stack (or through time).",
    )
    projection = ComboBox(
        name="projection",
        label="3D: next slice from",
        choices=list(PROJECTIONS),
        value="mask",
        tooltip="How a slice's mask prompts the next slice: 'mask' (its box, grown 5%, and "
        "the mask itself), 'box', 'points' (points inside, negative points around), "
        "'single_point' (the point deepest inside), 'points_and_mask'.",
    )
    iou_threshold = FloatSpinBox(
        name="iou_threshold",
        label="3D: stop below IoU",
        value=0.5,
        min=0.0,
        max=1.0,
        step=0.05,
        tooltip="The object ends where its mask on the next slice overlaps the previous "
        "one less than this (intersection over union), or is empty.",
    )
    axis_is_time = CheckBox(
        name="axis_is_time",
        value=False,
        text="the slider axis is time (track)",
        tooltip="Track the object forward in time along the slider you are on. Axes "
        "labelled t or time are tracked anyway; other axes are carried both ways.",
    )
    return InteractiveControls(
        image=layer_combo(viewer, "image", Image, tooltip="The image to segment."),
        points=layer_combo(
            viewer,
            "points",
            Points,
            nullable=True,
            tooltip="Point prompts; the 'label' feature says positive or negative.",
        ),
        shapes=layer_combo(
            viewer,
            "shapes",
            Shapes,
            nullable=True,
            tooltip="Box prompts: each rectangle is one object (other shapes: their bounding box).",
        ),
        labels=layer_combo(
            viewer,
            "labels",
            Labels,
            nullable=True,
            label="labels (target)",
            exclude=exclude_from_targets,
            tooltip="Where objects are written (and whose label 'Refine label' refines); none: a "
            "new Labels layer is made on first use.",
        ),
        point_type=RadioButtons(
            name="point_type",
            label="new points",
            choices=list(POINT_TYPES),
            value=POSITIVE,
            orientation="horizontal",
            tooltip=f"Press '{TOGGLE_KEY.upper()}' on the points layer to switch.",
        ),
        label_id=SpinBox(
            name="label_id",
            label="new label id",
            value=1,
            min=1,
            max=2**31 - 1,
            tooltip="The id the next object gets (the next free one is proposed). Choose an "
            "existing id to add the new mask to that object.",
        ),
        add_to_label=CheckBox(
            name="add_to_label",
            value=False,
            text="add to the label under the first positive point",
            tooltip="The new mask joins the label found under the first positive point.",
        ),
        multimask=CheckBox(
            name="multimask",
            value=True,
            text="multimask (keep the best of 3)",
            tooltip="SAM proposes 3 masks per object; keep the one it scores best.",
        ),
        overwrite=CheckBox(
            name="overwrite",
            value=False,
            text="overwrite existing labels",
            tooltip=OVERWRITE_TIP,
        ),
        live=CheckBox(
            name="live",
            value=False,
            text="live preview on every prompt change",
            tooltip="Show the mask (cyan outline) after every click; Commit [C] writes it.",
        ),
        run_button=PushButton(
            name="run_button",
            text="Segment prompts",
            tooltip="Write one label per object (box, or points) and remove the prompts used.",
        ),
        commit_button=PushButton(
            name="commit_button",
            text="Commit preview [C]",
            tooltip="Write the live preview into the target labels.",
        ),
        clear_button=PushButton(
            name="clear_button",
            text="Clear prompts [Shift+C]",
            tooltip="Remove every point and box of the prompt layers.",
        ),
        refine_id=SpinBox(
            name="refine_id",
            label="label to refine",
            value=1,
            min=1,
            max=2**31 - 1,
            tooltip="A label of the target layer (e.g. from Cellpose, StarDist, a threshold): its "
            "mask and box prompt SAM, plus the points on the slice. Follows the layer's "
            "selected label.",
        ),
        refine_button=PushButton(
            name="refine_button",
            text="Refine label",
            tooltip="Improve the label chosen in 'label to refine' with SAM (its mask and your points).",
        ),
        shortcuts=shortcuts,
        segment_3d_button=segment_3d_button,
        projection=projection,
        iou_threshold=iou_threshold,
        axis_is_time=axis_is_time,
        volume_section=Section(
            "3D and time",
            [segment_3d_button, projection, iou_threshold, axis_is_time],
            collapsed=True,
        ),
        tiling=tiling_controls(),
    )
