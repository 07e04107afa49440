"""The automatic generator's defaults exist once: the generator, segment_batch and the CLI
show ``generator_settings.DEFAULTS`` (the widget's controls: tests/napari)."""

from __future__ import annotations

import inspect

import pytest

from napari_sam_keras import SAMAutomaticMaskGenerator, SAMError, segment_batch
from napari_sam_keras.cli.parser import build_parser
from napari_sam_keras.segmentation.generator_settings import DEFAULTS, check_generator_options


def _defaults(function) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if name in DEFAULTS.to_dict()
    }


def test_every_front_end_has_the_same_defaults(tmp_path):
    settings = DEFAULTS.to_dict()
    generator = _defaults(SAMAutomaticMaskGenerator)
    assert generator == settings  # every setting, with its default
    assert _defaults(segment_batch) == {k: settings[k] for k in _defaults(segment_batch)}
    parser = build_parser()
    for command in ("auto", "batch"):
        args = parser.parse_args([command, str(tmp_path), *(["--out", "o"] * (command == "batch"))])
        given = {k: v for k, v in vars(args).items() if k in settings}
        assert len(given) == 7 and given == {k: settings[k] for k in given}, command


def test_options_are_checked_once_for_everyone():
    assert check_generator_options({"points_per_side": 4, "pred_iou_thresh": 0}) == {
        "points_per_side": 4,
        "pred_iou_thresh": 0,
    }
    with pytest.raises(SAMError, match="--points-per-batch must be at least 1"):
        check_generator_options({"points_per_batch": 0}, name=lambda n: "--" + n.replace("_", "-"))
    with pytest.raises(SAMError, match="unknown generator option"):
        check_generator_options({"points": 4})
    with pytest.raises(SAMError, match="must be a number"):
        check_generator_options({"box_nms_thresh": "0.5"})
    with pytest.raises(SAMError, match="crop_n_layers must be at least 0"):
        SAMAutomaticMaskGenerator(object(), crop_n_layers=-1)  # before the model is looked at


def test_a_model_may_recommend_its_own_settings():
    from types import SimpleNamespace

    from napari_sam_keras.segmentation.generator_settings import settings_for_model

    assert settings_for_model(SimpleNamespace(generator_defaults={})) == DEFAULTS
    own = settings_for_model(SimpleNamespace(generator_defaults={"pred_iou_thresh": 0.5}))
    assert own.pred_iou_thresh == 0.5 and own.points_per_side == DEFAULTS.points_per_side
    with pytest.raises(SAMError, match="recommends unknown generator option"):
        settings_for_model(SimpleNamespace(name="m", generator_defaults={"points": 4}))


def test_the_few_objects_hint_names_the_filter_that_rejected_most():
    from napari_sam_keras.segmentation.generator_settings import few_objects_hint

    settings = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
    hint = few_objects_hint(6, {"pred_iou_thresh": 10, "stability_score_thresh": 300}, settings)
    assert "lower stability_score_thresh (now 0.95" in hint and "300" in hint
    hint = few_objects_hint(0, {"pred_iou_thresh": 50, "stability_score_thresh": 3}, settings)
    assert "lower pred_iou_thresh (now 0.88" in hint
    assert few_objects_hint(30, {"pred_iou_thresh": 50}, settings) == ""  # not few
    assert few_objects_hint(2, {"pred_iou_thresh": 0}, settings) == ""  # nothing rejected


def test_the_demo_model_carries_settings_that_find_the_sample_nuclei(tmp_path):
    """The demo model's own settings (metadata.json) find most nuclei of the sample where
    the official defaults find a third; a saved copy keeps them; the generator counts what
    its thresholds rejected."""
    import numpy as np

    from napari_sam_keras import evaluate_instances, load_model, masks_to_labels, save_model
    from napari_sam_keras.sample_data import sample_image
    from napari_sam_keras.segmentation.generator_settings import settings_for_model

    network = load_model("demo_nuclei")
    own = settings_for_model(network)
    assert own != DEFAULTS
    image, truth = sample_image(with_labels=True)
    options = {k: v for k, v in own.to_dict().items() if k != "points_per_batch"}
    generator = SAMAutomaticMaskGenerator(network, **options)
    records = generator.generate(image)
    scores = evaluate_instances(masks_to_labels(records, image.shape), truth)
    assert scores["recall"] >= 0.75, scores
    assert generator.dropped["pred_iou_thresh"] > 0
    assert np.all([r["predicted_iou"] > own.pred_iou_thresh for r in records])

    again = load_model(save_model(network, tmp_path / "copy"))
    assert again.generator_defaults == network.generator_defaults
