"""The automatic widget's controls (:class:`AutomaticControls`): the mode, the generator, the
decoder, 3D linking, built and laid out in one place; the widget wires them up."""

from __future__ import annotations

from dataclasses import dataclass

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, PushButton, SpinBox
from napari.layers import Image, Labels

from ...processing.instance_watershed import WatershedSettings
from ...segmentation.generator_settings import DEFAULTS, GeneratorSettings
from ...segmentation.volume_linking import LINK_IOU_THRESHOLD
from ..jobs.automatic_job import DECODER, GENERATOR
from ..layers.labels_writing import OVERWRITE_TIP
from ..layers.layer_pickers import LayerComboBox, layer_combo
from ..widget_parts.sections import Section
from ..widget_parts.tiling_controls import TilingControls, tiling_controls
from ..widget_parts.widget_base import row
from .concept_mode import ConceptControls, concept_controls

MODE_TIP = (
    "automatic mask generator: SAM prompted with a grid of points (any model, slow on a CPU). "
    "instance decoder: micro-sam's decoder on the embedding, then a watershed (seconds; only "
    "for models that come with a decoder, e.g. vit_b_lm)."
)
NOT_LOADED_TIP = (
    "The instance decoder is offered once the model is loaded and has one: choose the model "
    "(it is loaded then), or run once."
)


def no_decoder_tip(name: str) -> str:
    return (
        f"The model {name!r} has no instance decoder, so only the automatic mask generator is "
        "offered. Load a micro-sam model that has one (e.g. vit_b_lm.pt with "
        "vit_b_lm_decoder.pt beside it)."
    )


def mode_control() -> ComboBox:
    """``mode``: the automatic mask generator or the instance decoder."""
    return ComboBox(
        name="mode", choices=[GENERATOR, DECODER], value=GENERATOR, tooltip=NOT_LOADED_TIP
    )


@dataclass
class DecoderControls:
    """The instance decoder's watershed thresholds (micro-sam's names)."""

    center: FloatSpinBox
    boundary: FloatSpinBox
    foreground: FloatSpinBox
    smoothing: FloatSpinBox
    min_size: SpinBox

    @property
    def widgets(self) -> list:
        return [self.center, self.boundary, self.foreground, self.smoothing, self.min_size]

    def options(self) -> dict:
        """The thresholds as keyword arguments of ``InstanceSegmenter.segment``."""
        return {
            "center_distance_threshold": float(self.center.value),
            "boundary_distance_threshold": float(self.boundary.value),
            "foreground_threshold": float(self.foreground.value),
            "distance_smoothing": float(self.smoothing.value),
            "min_size": int(self.min_size.value),
        }

    def show_settings(self, settings: WatershedSettings) -> None:
        """Show a model's default thresholds."""
        self.center.value = settings.center_distance_threshold
        self.boundary.value = settings.boundary_distance_threshold
        self.foreground.value = settings.foreground_threshold
        self.smoothing.value = settings.distance_smoothing
        self.min_size.value = settings.min_size


def _fraction(name: str, value: float, tooltip: str, step: float = 0.05) -> FloatSpinBox:
    return FloatSpinBox(name=name, value=value, min=0.0, max=1.0, step=step, tooltip=tooltip)


@dataclass
class GeneratorControls:
    """The automatic mask generator's options (named as its keyword arguments)."""

    points_per_side: SpinBox
    pred_iou_thresh: FloatSpinBox
    stability_score_thresh: FloatSpinBox
    box_nms_thresh: FloatSpinBox
    min_mask_region_area: SpinBox

    @property
    def widgets(self) -> list:
        return [
            self.points_per_side,
            self.pred_iou_thresh,
            self.stability_score_thresh,
            self.box_nms_thresh,
            self.min_mask_region_area,
        ]

    def __iter__(self):
        return iter(self.widgets)

    def options(self) -> dict:
        """The values as keyword arguments of the generator."""
        return {
            "points_per_side": int(self.points_per_side.value),
            "pred_iou_thresh": float(self.pred_iou_thresh.value),
            "stability_score_thresh": float(self.stability_score_thresh.value),
            "box_nms_thresh": float(self.box_nms_thresh.value),
            "min_mask_region_area": int(self.min_mask_region_area.value),
        }

    def show_defaults(self, new: GeneratorSettings, shown: GeneratorSettings):
        """Show a model's recommended settings, leaving the values the user changed;
        returns ``new`` (the defaults now shown)."""
        for control in self.widgets:
            if control.value == getattr(shown, control.name):
                control.value = getattr(new, control.name)
        return new


def generator_controls() -> GeneratorControls:
    """The automatic mask generator's options, with the official defaults."""
    points_per_side = SpinBox(
        name="points_per_side",
        value=DEFAULTS.points_per_side,
        min=1,
        max=128,
        tooltip="Grid of points per image side; more finds smaller objects, slower.",
    )
    iou = _fraction(
        "pred_iou_thresh",
        DEFAULTS.pred_iou_thresh,
        "Keep masks whose predicted quality is at least this.",
        0.01,
    )
    stability = _fraction(
        "stability_score_thresh",
        DEFAULTS.stability_score_thresh,
        "Keep masks that change little when the threshold moves.",
        0.01,
    )
    nms = _fraction(
        "box_nms_thresh",
        DEFAULTS.box_nms_thresh,
        "Drop masks whose box overlaps a better one by more than this IoU.",
        0.01,
    )
    area = SpinBox(
        name="min_mask_region_area",
        value=DEFAULTS.min_mask_region_area,
        min=0,
        max=10_000_000,
        tooltip="Remove holes and islands smaller than this many pixels (0: off).",
    )
    return GeneratorControls(points_per_side, iou, stability, nms, area)


def decoder_controls() -> DecoderControls:
    """The decoder's thresholds, with micro-sam's general defaults (a model's own on loading)."""
    d = WatershedSettings()
    return DecoderControls(
        center=_fraction(
            "center_distance_threshold",
            d.center_distance_threshold,
            "Seeds where the distance to the object centre is below this. Lower it when "
            "touching objects merge; raise it when one object splits.",
        ),
        boundary=_fraction(
            "boundary_distance_threshold",
            d.boundary_distance_threshold,
            "Seeds only where the distance to the boundary is below this too.",
        ),
        foreground=_fraction(
            "foreground_threshold",
            d.foreground_threshold,
            "Pixels whose foreground probability is above this belong to objects.",
        ),
        smoothing=FloatSpinBox(
            name="distance_smoothing",
            value=d.distance_smoothing,
            min=0.0,
            max=10.0,
            step=0.1,
            tooltip="Gaussian sigma applied to the distance maps before the watershed.",
        ),
        min_size=SpinBox(
            name="min_size",
            value=d.min_size,
            min=0,
            max=10_000_000,
            tooltip="Objects smaller than this many pixels are removed.",
        ),
    )


@dataclass
class LinkControls:
    """Every-slice mode: link the slices' objects into 3D objects."""

    link: CheckBox
    iou: FloatSpinBox
    min_slices: SpinBox

    @property
    def widgets(self) -> list:
        return [self.link, self.iou, self.min_slices]

    def options(self) -> dict | None:
        """``link_slices`` arguments, or ``None`` when linking is off."""
        if not self.link.value:
            return None
        return {"iou_threshold": float(self.iou.value), "min_slices": int(self.min_slices.value)}

    def follow(self, every_slice: bool) -> None:
        for widget in self.widgets:
            widget.enabled = every_slice


def link_controls() -> LinkControls:
    return LinkControls(
        link=CheckBox(
            name="link_slices",
            value=False,
            text="link slices into 3D objects",
            tooltip="Every slice mode: an object on neighbouring slices (IoU above 'link IoU') "
            "becomes one 3D object with one label (on by default for a (Z, Y, X) image).",
        ),
        iou=FloatSpinBox(
            name="link_iou",
            value=LINK_IOU_THRESHOLD,
            min=0.01,
            max=1.0,
            step=0.05,
            tooltip="Objects on neighbouring slices overlapping by at least this IoU are one.",
        ),
        min_slices=SpinBox(
            name="min_slices",
            value=1,
            min=1,
            max=10_000,
            tooltip="3D objects on fewer slices than this are dropped (2: drop one-slice objects).",
        ),
    )


@dataclass
class AutomaticControls:
    """Every control of the automatic widget, one typed attribute each (groups of controls
    as their own small classes).

    A magicgui control's name is its field's, or its group's field (``generator``'s
    ``points_per_side``), so scripts reach it as ``widget.<name>`` and the widget's code
    as ``self.controls.<field>``.  Adding a control: a field here, its construction in
    :func:`automatic_controls`, its place in :meth:`sections`.
    """

    image: LayerComboBox
    labels: LayerComboBox
    mode: ComboBox
    concept: ConceptControls
    generator: GeneratorControls
    decoder: DecoderControls
    tiling: TilingControls
    all_slices: CheckBox
    linking: LinkControls
    overwrite: CheckBox
    run_button: PushButton
    volume_section: Section

    def sections(self, model_picker, embeddings_picker) -> list[Section]:
        """The dock's folding sections, top to bottom."""
        return [
            Section("Image and model", [self.image, model_picker, embeddings_picker]),
            Section(
                "Segment",
                [
                    self.labels,
                    self.mode,
                    *self.concept.widgets,
                    *self.generator.widgets,
                    *self.decoder.widgets,
                ],
            ),
            self.volume_section,
            Section(
                "Advanced: tiles, overwrite",
                [*self.tiling.widgets, self.overwrite],
                collapsed=True,
                name="advanced",
            ),
        ]

    def footer(self, cancel_button, status) -> list:
        """What stays visible under the sections: the buttons and the status line."""
        return [row(self.run_button, cancel_button), row(status)]


def automatic_controls(viewer) -> AutomaticControls:
    """The automatic widget's controls, with the official generator defaults."""
    all_slices = CheckBox(
        name="all_slices",
        value=False,
        text="every slice (nD images)",
        tooltip="Segment every 2D slice of a stack, not only the one shown.",
    )
    linking = link_controls()
    return AutomaticControls(
        image=layer_combo(viewer, "image", Image, tooltip="The image to segment."),
        labels=layer_combo(
            viewer,
            "labels",
            Labels,
            nullable=True,
            label="labels (target)",
            tooltip="Where objects are written (the Labels layer already used for the image is "
            "proposed); none: a new Labels layer is made.",
        ),
        mode=mode_control(),
        concept=concept_controls(viewer),
        generator=generator_controls(),
        decoder=decoder_controls(),
        tiling=tiling_controls(),
        all_slices=all_slices,
        linking=linking,
        overwrite=CheckBox(
            name="overwrite", value=False, text="overwrite existing labels", tooltip=OVERWRITE_TIP
        ),
        run_button=PushButton(
            name="run_button",
            text="Segment everything",
            tooltip="Find every object on the slice (or every slice) and write them as new labels.",
        ),
        volume_section=Section("3D and time", [all_slices, *linking.widgets], collapsed=True),
    )
