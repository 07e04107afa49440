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
