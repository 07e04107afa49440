"""The automatic widget's mode choice (generator / instance decoder) and 3D linking.

Run under ``xvfb-run -a``.  The instance-decoder model is a tiny SAM with a
random torch-em decoder saved the way micro-sam releases its models (a plain
SAM state dict and ``<name>_decoder.pt`` beside it), loaded by the widget
through ``load_model``; its labels are checked against
:class:`~napari_sam_keras.InstanceSegmenter` on the same slices.  3D linking
is checked with the shipped demo model against the ground truth of a
synthetic stack.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch_em_oracle
from helpers import TINY

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # before any viewer exists (see test_napari_widgets)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
AUTOMATIC = "Automatic segmentation"

#: Loose thresholds: random decoder weights still give objects.
THRESHOLDS = {
    "center_distance_threshold": 0.6,
    "boundary_distance_threshold": 0.6,
    "foreground_threshold": 0.3,
    "distance_smoothing": 1.0,
    "min_size": 10,
}


@pytest.fixture(scope="module")
def decoder_checkpoint(tmp_path_factory):
    """A tiny SAM + random torch-em decoder, as micro-sam releases them (two files)."""
    if not torch_em_oracle.torch_em_available():
        pytest.skip("torch and torch-em are needed to make a checkpoint with a decoder")
    import torch
    from official_sam import build_official_sam

    sam = build_official_sam(TINY, seed=0)
    unetr = torch_em_oracle.build_unetr(sam.image_encoder, seed=3, initial_features=16)
    root = tmp_path_factory.mktemp("micro_sam_widget")
    torch.save(sam.state_dict(), root / "tiny_lm.pt")
    torch.save(torch_em_oracle.decoder_state(unetr), root / "tiny_lm_decoder.pt")
    return root / "tiny_lm.pt"


@pytest.fixture(scope="module")
def decoder_network(decoder_checkpoint):
    from napari_sam_keras import load_model

    network = load_model(decoder_checkpoint)
    assert network.instance_decoder is not None
    return network


@pytest.fixture
def auto_widget(make_napari_viewer):
    def make(image, **kwargs):
        viewer = make_napari_viewer()
        layer = viewer.add_image(image, name="img", **kwargs)
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, AUTOMATIC)
        return viewer, layer, widget

    return make


def _use_decoder(widget, checkpoint) -> None:
    from napari_sam_keras.napari_adapter.jobs.automatic_job import DECODER

    widget.model.value = str(checkpoint)
    assert widget.load_model(blocking=True) is not None, widget.status.details
    assert widget.mode.enabled
    widget.mode.value = DECODER
    for name, value in THRESHOLDS.items():
        getattr(widget, name).value = value


def _reference(network, image: np.ndarray, limits) -> np.ndarray:
    from napari_sam_keras import InstanceSegmenter

    return InstanceSegmenter(network).segment(image, contrast_limits=limits, **THRESHOLDS)


def _same_objects(got: np.ndarray, expected: np.ndarray) -> bool:
    """Whether two label images hold the same objects, whatever their ids."""
    if not np.array_equal(got > 0, expected > 0):
        return False
    pairs = np.unique(np.stack([got[got > 0], expected[expected > 0]]), axis=1)
    return len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


def shown(control) -> bool:
    """Not hidden by the widget (the test viewer's window itself is never shown)."""
    return not control.native.isHidden()


def _stack() -> np.ndarray:
    from napari_sam_keras.sample_data import sample_image

    return np.stack([sample_image((64, 64), n_cells=3, seed=s) for s in range(3)])


def test_instance_mode_writes_labels_per_slice_in_one_undo_step(
    auto_widget, decoder_checkpoint, decoder_network
):
    image = _stack()
    viewer, layer, widget = auto_widget(image)
    _use_decoder(widget, decoder_checkpoint)
    limits = tuple(layer.contrast_limits)
    target = viewer.add_labels(np.zeros(image.shape, np.int32))
    target.data[0, :4, :4] = 9  # an existing label survives
    widget.labels.value = target
    viewer.dims.set_point(0, 1)

    # the displayed slice: its objects, as InstanceSegmenter gives them
    assert widget.run() is target, widget.status.details
    expected = _reference(widget.model_store.loaded(str(decoder_checkpoint)), image[1], limits)
    assert expected.max() >= 1  # the loose thresholds give objects
    assert _same_objects(target.data[1], expected)
    assert (target.data[0, :4, :4] == 9).all() and not target.data[2].any()
    assert widget.status.value.startswith("wrote")
    target.undo()
    assert set(np.unique(target.data)) == {0, 9} and (target.data[0, :4, :4] == 9).all()

    # every slice, unlinked: each slice's own objects, new ids throughout, one undo step
    widget.all_slices.value = True
    widget.link_slices.value = False
    assert widget.run() is target, widget.status.details
    network = widget.model_store.loaded(str(decoder_checkpoint))
    for z in range(3):
        written = np.where(target.data[z] == 9, 0, target.data[z])
        reference = _reference(network, image[z], limits)
        reference[target.data[z] == 9] = 0  # existing labels are kept
        assert _same_objects(written, reference), z
    ids = [set(np.unique(target.data[z])) - {0, 9} for z in range(3)]
    assert all(ids) and not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    target.undo()
    assert set(np.unique(target.data)) == {0, 9}


def test_cancel_in_instance_mode_changes_nothing(
    auto_widget, decoder_checkpoint, decoder_network, monkeypatch, qtbot
):
    from napari_sam_keras import InstanceSegmenter

    image = _stack()
    viewer, layer, widget = auto_widget(image)
    _use_decoder(widget, decoder_checkpoint)
    target = viewer.add_labels(np.zeros(image.shape, np.int32))
    target.data[2, 10:20, 10:20] = 4
    widget.labels.value = target
    widget.all_slices.value = True
    before = np.array(target.data, copy=True)

    started, release = threading.Event(), threading.Event()
    segment = InstanceSegmenter.segment

    def held_segment(self, *args, **kwargs):  # the real decoder, after the test's cancel
        started.set()
        release.wait(10)
        return segment(self, *args, **kwargs)

    monkeypatch.setattr(InstanceSegmenter, "segment", held_segment)
    widget.run_button.native.click()
    assert started.wait(20)
    assert widget.busy
    widget.cancel()
    release.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=20000)
    assert widget.status.value.startswith("cancelled"), widget.status.value
    assert np.array_equal(target.data, before)
    assert len(viewer.layers) == 2


def test_decoder_mode_is_offered_only_for_a_model_with_a_decoder(
    auto_widget, tiny_checkpoint, tiny_network, decoder_checkpoint, decoder_network
):
    from napari_sam_keras.napari_adapter.jobs.automatic_job import DECODER, GENERATOR

    viewer, layer, widget = auto_widget(_stack()[0])
    widget.model.value = str(decoder_checkpoint.with_name("never_loaded.pt"))
    assert not widget.mode.enabled and "once the model is loaded" in widget.mode.tooltip

    widget.model.value = str(tiny_checkpoint)
    widget.model_store.add(str(tiny_checkpoint), tiny_network)  # loaded (by any widget)
    assert not widget.mode.enabled
    assert widget.mode.value == GENERATOR
    assert "has no instance decoder" in widget.mode.tooltip

    widget.model_store.add(str(decoder_checkpoint), decoder_network)
    widget.model.value = str(decoder_checkpoint)
    assert widget.mode.enabled
    widget.mode.value = DECODER
    # the decoder's thresholds are shown, the generator's hidden
    assert shown(widget.center_distance_threshold) and not shown(widget.points_per_side)

    widget.model.value = str(tiny_checkpoint)  # back to a model without a decoder
    assert not widget.mode.enabled and widget.mode.value == GENERATOR
    assert shown(widget.points_per_side) and not shown(widget.center_distance_threshold)


def test_every_slice_links_into_one_label_per_ellipsoid(auto_widget):
    """Issue 10: the demo model on separated ellipsoids: one 3D label per ellipsoid."""
    from napari_sam_keras import load_model
    from napari_sam_keras.sample_data import sample_stack

    image, truth = sample_stack(n_cells=6, seed=8, with_labels=True)
    viewer, layer, widget = auto_widget(image)
    widget.model.value = "demo_nuclei"
    widget.model_store.add("demo_nuclei", load_model("demo_nuclei"))
    assert widget.link_slices.value  # on by default for a (Z, Y, X) image
    widget.all_slices.value = True
    widget.points_per_side.value = 16
    widget.pred_iou_thresh.value = 0.8
    widget.stability_score_thresh.value = 0.85
    widget.min_mask_region_area.value = 20
    widget.min_slices.value = 2
    labels = widget.run()
    assert labels is not None, widget.status.details
    assert "3D objects" in widget.status.value
    got = np.asarray(labels.data)
    predicted = [j for j in np.unique(got) if j]
    truths = [i for i in np.unique(truth) if i]
    matched = {}
    for i in truths:
        ious = {
            j: np.count_nonzero((got == j) & (truth == i))
            / np.count_nonzero((got == j) | (truth == i))
            for j in predicted
        }
        best = max(ious, key=ious.get)
        assert ious[best] >= 0.6, (i, ious[best])
        matched[i] = best
    assert len(set(matched.values())) == len(truths) == len(predicted)
    # each label spans several slices: one id per 3D object
    assert all(np.count_nonzero((got == j).any(axis=(1, 2))) >= 2 for j in predicted)
    labels.undo()
    assert not labels.data.any()
