"""The automatic widget's "Find all like the examples" mode (SAM 3 concept segmentation).

Exemplar boxes come from a Shapes layer (rectangles; any shape gives its bounding box),
positive unless marked negative the way negative points are: a ``label`` feature of
``negative`` (or 0); an optional text names the concept.  The model is a SAM 3
(:func:`~napari_sam_keras.load_concept_model`: a Hugging Face or keras-hub SAM 3 folder,
or ``sam3_pcs``), loaded once per source and kept here.  The job
(:class:`ConceptJob`) runs on the displayed slice or every slice (linked in 3D) like the
other automatic modes, and its labels are written by the widget the same way: new ids,
never over existing labels unless asked, one undo step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, LineEdit
from napari.layers import Shapes

from ...errors import PromptError
from ..jobs.automatic_job import AutomaticJob
from ..jobs.steps import step as _step
from ..layers.image_slices import make_slice
from ..layers.layer_pickers import layer_combo
from ..layers.prompts_from_layers import LABEL_FEATURE, boxes_on_slice, label_value

CONCEPT = "find all like the examples"
CONCEPT_TIP = (
    "SAM 3 finds every object like the exemplar boxes (and/or the text): draw a box around "
    "one object in the exemplar Shapes layer; mark a box negative (label feature "
    "'negative') for objects NOT to find. Needs a SAM 3 model: a Hugging Face SAM 3 folder "
    "(facebook/sam3) or the keras-hub preset sam3_pcs."
)

_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()


def concept_model(source: str):
    """The SAM 3 for ``source``, loaded once per session."""
    from ... import load_concept_model

    with _LOCK:
        if source not in _MODELS:
            _MODELS[source] = load_concept_model(source)
        return _MODELS[source]


@dataclass
class ConceptControls:
    """The mode switch, the exemplar Shapes layer, the text and the score threshold."""

    enable: CheckBox
    exemplars: object
    text: LineEdit
    threshold: FloatSpinBox

    @property
    def widgets(self) -> list:
        return [self.enable, self.exemplars, self.text, self.threshold]

    @property
    def on(self) -> bool:
        return bool(self.enable.value)

    def show(self, on: bool) -> None:
        for widget in (self.exemplars, self.text, self.threshold):
            widget.visible = on


def concept_controls(viewer) -> ConceptControls:
    return ConceptControls(
        enable=CheckBox(
            name="find_all_like", value=False, text=f"{CONCEPT} (SAM 3)", tooltip=CONCEPT_TIP
        ),
        exemplars=layer_combo(
            viewer,
            "exemplars",
            Shapes,
            nullable=True,
            label="exemplar boxes",
            tooltip="The Shapes layer whose boxes on this slice are the examples.",
        ),
        text=LineEdit(name="concept_text", value="", tooltip="Optional: the concept in words."),
        threshold=FloatSpinBox(
            name="score_threshold",
            value=0.5,
            min=0.0,
            max=0.99,
            step=0.05,
            tooltip="Keep the objects SAM 3 scores above this.",
        ),
    )


def exemplar_labels_of(shapes_layer, rows: np.ndarray) -> np.ndarray:
    """1 (positive) / 0 (negative) per shape row: its ``label`` feature, positive without one."""
    features = shapes_layer.features
    if LABEL_FEATURE not in getattr(features, "columns", ()):
        return np.ones(len(rows), np.int32)
    values = list(features[LABEL_FEATURE])
    return np.array([label_value(values[int(r)]) for r in rows], np.int32)


def read_exemplars(shapes_layer, image, index, axes, world_point):
    """(boxes (N, 4) XYXY full-resolution pixels, labels (N,)) on the displayed slice."""
    if shapes_layer is None:
        return np.zeros((0, 4)), np.zeros(0, np.int32)
    image_slice = make_slice(image, index, axes, None)
    boxes, rows = boxes_on_slice(shapes_layer, image_slice, world_point)
    return boxes, exemplar_labels_of(shapes_layer, rows)


@dataclass(frozen=True, eq=False)
class ConceptJob(AutomaticJob):
    """:class:`AutomaticJob` with SAM 3: every object like the exemplars, per slice."""

    text: str | None = None
    exemplars: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    exemplar_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    score_threshold: float = 0.5

    def check(self) -> None:
        """The prompt errors a user can fix, before any work."""
        if not (self.text or "").strip() and not len(self.exemplars):
            raise PromptError(
                "No examples: draw a box around one object in the exemplar Shapes layer on "
                "this slice, or type a text."
            )

    def _network(self, models, report):
        _step(report, "loading SAM 3 (a Hugging Face checkpoint is converted the first time)")
        return concept_model(self.model_source)

    def _method(self, network):
        from ... import ConceptSegmenter

        segmenter = ConceptSegmenter(network)

        def find(image_slice, cache, report, where, progress):
            _step(report, f"{where}finding all like the examples")
            dy, dx = image_slice.downsample
            boxes = np.asarray(self.exemplars, np.float64) / np.array([dx, dy, dx, dy])
            return segmenter.segment(
                image_slice.data,
                self.text,
                boxes,
                self.exemplar_labels,
                score_threshold=self.score_threshold,
                contrast_limits=image_slice.contrast_limits,
                progress=progress,
            )

        return find
