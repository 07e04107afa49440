"""Every user error of the public API is a SAMError: each public name, called with bad
arguments, raises nothing else (the lazy ``_EXPORTS`` of ``napari_sam_keras`` is walked, so a
new public name without a bad call here fails the walk)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam_keras as nsk
from napari_sam_keras import SAMError

NOT_A_MODEL = "not a model"
VOLUME = np.zeros((3, 16, 16), np.uint8)
PROMPT = {1: {"point_coords": [[8, 8]], "point_labels": [1]}}


def bad_calls(tmp_path) -> dict[str, list]:
    """Per public name, calls with bad arguments (each must raise a SAMError)."""
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("")
    return {
        "load_model": [
            lambda: nsk.load_model(""),
            lambda: nsk.load_model("missing.pth"),
            lambda: nsk.load_model("demo_nuclei", hub="nope"),
            lambda: nsk.load_model(a_file),
            lambda: nsk.load_model("demo_nuclei", quantize="int4"),
            lambda: nsk.load_model("demo_nuclei", quantize="int8", dtype_policy="mixed_bfloat16"),
        ],
        "build_sam": [lambda: nsk.build_sam("vit_q")],
        "SAMConfig": [lambda: nsk.SAMConfig(image_size=1000, patch_size=16)],
        "SAMPredictor": [lambda: nsk.SAMPredictor(NOT_A_MODEL)],
        "TiledSAMPredictor": [lambda: nsk.TiledSAMPredictor(NOT_A_MODEL)],
        "SAMAutomaticMaskGenerator": [
            lambda: nsk.SAMAutomaticMaskGenerator(NOT_A_MODEL),
            lambda: nsk.SAMAutomaticMaskGenerator(NOT_A_MODEL, points_per_side=0),
            lambda: nsk.SAMAutomaticMaskGenerator(NOT_A_MODEL, points_per_batch=0),
            lambda: nsk.SAMAutomaticMaskGenerator(NOT_A_MODEL, crop_n_layers=-1),
            lambda: nsk.SAMAutomaticMaskGenerator(NOT_A_MODEL, output_mode="png"),
            lambda: nsk.SAMAutomaticMaskGenerator(NOT_A_MODEL, tile_shape=64, crop_n_layers=1),
            lambda: nsk.SAMAutomaticMaskGenerator(NOT_A_MODEL, halo=8),
            lambda: nsk.SAMAutomaticMaskGenerator(
                NOT_A_MODEL, points_per_side=4, point_grids=[np.zeros((1, 2))]
            ),
        ],
        "InstanceSegmenter": [lambda: nsk.InstanceSegmenter(NOT_A_MODEL)],
        "masks_to_labels": [
            lambda: nsk.masks_to_labels([]),
            lambda: nsk.masks_to_labels([np.zeros((4, 4), bool)], overlap="nope"),
            lambda: nsk.masks_to_labels([np.zeros((4, 4), bool), np.zeros((5, 5), bool)]),
        ],
        "segment_batch": [
            lambda: nsk.segment_batch([], tmp_path / "out", model="demo_nuclei"),
            lambda: nsk.segment_batch(a_file, tmp_path / "out", model="missing.pth"),
            lambda: nsk.segment_batch(a_file, tmp_path / "out", mode="nope"),
            lambda: nsk.segment_batch(a_file, tmp_path / "out", quantize="int4"),
        ],
        "ImageEmbedding": [
            lambda: nsk.ImageEmbedding(np.zeros((2, 2)), (4, 4), (4, 4), "m"),
        ],
        "EmbeddingCache": [lambda: nsk.EmbeddingCache(max_items=0)],
        "EmbeddingStore": [lambda: nsk.EmbeddingStore(a_file)],
        "precompute_embeddings": [
            lambda: nsk.precompute_embeddings(NOT_A_MODEL, VOLUME, tmp_path / "s.zarr")
        ],
        "import_micro_sam_embeddings": [
            lambda: nsk.import_micro_sam_embeddings(tmp_path, VOLUME, NOT_A_MODEL, tmp_path / "s")
        ],
        "export_micro_sam_embeddings": [
            lambda: nsk.export_micro_sam_embeddings(tmp_path / "missing", VOLUME, tmp_path / "m")
        ],
        "TileGrid": [lambda: nsk.TileGrid((16, 16), 0)],
        "segment_volume": [
            lambda: nsk.segment_volume(NOT_A_MODEL, VOLUME, PROMPT),
            lambda: nsk.segment_volume(NOT_A_MODEL, VOLUME[0], PROMPT),
            lambda: nsk.segment_volume(NOT_A_MODEL, VOLUME, {7: PROMPT[1]}),
            lambda: nsk.segment_volume(NOT_A_MODEL, VOLUME, PROMPT, projection="nope"),
            lambda: nsk.segment_volume(NOT_A_MODEL, VOLUME, PROMPT, embeddings=42),
        ],
        "track_object": [lambda: nsk.track_object(NOT_A_MODEL, VOLUME, PROMPT)],
        "link_slices": [lambda: nsk.link_slices(np.zeros((3, 4, 4)))],
        "segment_volume_automatic": [lambda: nsk.segment_volume_automatic(NOT_A_MODEL, VOLUME)],
        "open_axis_image": [lambda: nsk.open_axis_image(tmp_path / "missing.tif")],
        "open_planes": [lambda: nsk.open_planes(tmp_path / "missing.tif")],
        "AxisImage": [lambda: nsk.AxisImage(np.zeros((4, 4)), "ZYX", tmp_path / "x.tif")],
        "load_concept_model": [
            lambda: nsk.load_concept_model(tmp_path / "missing"),
            lambda: nsk.load_concept_model(a_file),
        ],
        "ConceptSegmenter": [lambda: nsk.ConceptSegmenter(NOT_A_MODEL)],
        "finetune": [
            lambda: nsk.finetune(NOT_A_MODEL, [], []),
            lambda: nsk.finetune(
                NOT_A_MODEL, [np.zeros((8, 8))], [np.zeros((8, 8), np.float32)], mode="nope"
            ),
        ],
        "save_model": [lambda: nsk.save_model(NOT_A_MODEL, tmp_path / "m")],
        "export_micro_sam": [lambda: nsk.export_micro_sam(NOT_A_MODEL, tmp_path / "m.pt")],
        "evaluate_prompts": [lambda: nsk.evaluate_prompts(NOT_A_MODEL, [], [])],
        "evaluate_instances": [
            lambda: nsk.evaluate_instances(np.zeros((4, 4), int), np.zeros((5, 5), int))
        ],
    }


#: Public names that are not called with user input: exception classes, the network objects
#: that load_model, build_sam and load_concept_model make, and the results the API returns.
NOT_CALLED = {"SAMNetwork", "ConceptModel", "ConceptResult", "FineTuneResult"}


def _walked() -> list[str]:
    names = []
    for name in nsk._EXPORTS:
        value = getattr(nsk, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            continue
        if name not in NOT_CALLED:
            names.append(name)
    return names


def test_every_public_name_has_bad_calls(tmp_path):
    assert sorted(bad_calls(tmp_path)) == sorted(_walked())


@pytest.mark.parametrize("name", _walked())
def test_bad_arguments_raise_a_sam_error(name, tmp_path):
    for call in bad_calls(tmp_path)[name]:
        with pytest.raises(SAMError):
            call()
