"""SAM 3 concept segmentation ("find all like the examples") against transformers' SAM 3.

The oracle is a tiny random Hugging Face ``Sam3Model`` (``tests/sam3_oracle.py``) saved
with ``save_pretrained`` and read back through :func:`load_concept_model`; keras-hub's
converter, our corrected forward pass and our tokenizer must give its PyTorch outputs.
Every model call here has the same input shapes (a text and two exemplar boxes), so the
model compiles once; the parity test runs again on tensorflow in a process of its own.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras_hub")
pytest.importorskip("transformers")

from sam3_oracle import oracle_outputs

from napari_sam_keras import (
    ConceptSegmenter,
    OperationCancelled,
    PromptError,
    SAMError,
)
from napari_sam_keras.segmentation.concept_segmenter import (
    _box_input,
    _model_input,
    instances,
)

#: A non-square uint16 image: two bright blobs on a dim background.
SHAPE = (60, 90)
POSITIVE = (8.0, 6.0, 38.0, 30.0)
NEGATIVE = (52.0, 24.0, 84.0, 54.0)
#: The exemplars of every model call (one compiled shape): a positive and a negative box.
EXEMPLARS = {"exemplars": [POSITIVE, NEGATIVE], "exemplar_labels": [1, 0]}


def _image() -> np.ndarray:
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    image = 300 + 3000 * ((yy - 18) ** 2 + (xx - 23) ** 2 < 120)
    image = image + 2000 * ((yy - 40) ** 2 + (xx - 68) ** 2 < 150)
    noise = np.random.default_rng(0).integers(0, 200, SHAPE)
    return (image + noise).astype(np.uint16)


def _inputs(model, image, text, boxes, labels):
    from napari_sam_keras.processing.images import to_rgb_uint8

    ids, mask = model.tokenizer(text)
    return {
        "pixel_values": _model_input(to_rgb_uint8(image), model.image_size),
        "token_ids": ids,
        "padding_mask": mask,
        "boxes": _box_input(np.asarray(boxes, np.float32).reshape(-1, 4), image.shape[:2]),
        "box_labels": np.asarray(labels, np.int32)[None],
    }


@pytest.mark.other_backends
def test_parity_with_transformers(tiny_sam3, tiny_concept_model):
    """Text + a positive and a negative exemplar on a non-square image: same outputs."""
    _, oracle, tokenizer = tiny_sam3
    model = tiny_concept_model
    image = _image()
    boxes, labels = np.array([POSITIVE, NEGATIVE], np.float32), [1, 0]
    inputs = _inputs(model, image, "nucleus", boxes, labels)
    norm = boxes / np.array([SHAPE[1], SHAPE[0], SHAPE[1], SHAPE[0]], np.float32)
    want = oracle_outputs(oracle, tokenizer, inputs["pixel_values"], "nucleus", norm, labels)
    np.testing.assert_array_equal(inputs["token_ids"], want["input_ids"])
    np.testing.assert_array_equal(inputs["padding_mask"], want["attention_mask"])
    got = model.run(inputs)
    np.testing.assert_allclose(got["pred_logits"], want["pred_logits"], atol=5e-5)
    np.testing.assert_allclose(got["presence_logits"], want["presence_logits"], atol=5e-5)
    np.testing.assert_allclose(got["pred_boxes"], want["pred_boxes"], atol=5e-5)
    masks = np.moveaxis(got["pred_masks"], -1, 1)
    np.testing.assert_allclose(masks, want["pred_masks"], atol=5e-5)
    np.testing.assert_allclose(
        np.moveaxis(got["semantic_segs"], -1, 1), want["semantic_seg"], atol=5e-5
    )
    # The whole path, image to instances at the image's size, with transformers' numbers:
    ours = ConceptSegmenter(model).predict(image, "nucleus", boxes, labels, score_threshold=0.0)
    want["pred_masks"] = np.moveaxis(want["pred_masks"], 1, -1)
    theirs = instances(want, SHAPE, 0.0)
    assert len(ours) == len(theirs) == 8
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5)
    disagree = np.mean(ours.masks != theirs.masks)
    assert disagree < 1e-3, f"{disagree:.2%} of mask pixels differ"


@pytest.mark.other_backends(backends=("torch",))
def test_exemplar_boxes_work_or_say_what_they_need(tiny_concept_model, monkeypatch):
    """jax and tensorflow pool exemplar boxes with keras-hub's Keras roi_align; on torch
    keras-hub uses torchvision's (here the tests' stand-in): with it the boxes work, without
    it one clear error names it, not a ModuleNotFoundError from deep in keras-hub. A text
    prompt works on every backend."""
    import sys

    import keras

    from napari_sam_keras.errors import BackendError

    segmenter = ConceptSegmenter(tiny_concept_model)
    image = _image()
    text_only = segmenter.segment(image, text="nucleus", score_threshold=0.0)
    assert text_only.shape == SHAPE and text_only.max() > 0
    labels = segmenter.segment(image, exemplars=[POSITIVE], score_threshold=0.0)
    assert labels.shape == SHAPE and labels.max() > 0
    if keras.backend.backend() == "torch":
        monkeypatch.setitem(sys.modules, "torchvision.ops", None)  # torchvision without it
        with pytest.raises(BackendError, match="torchvision.*jax or tensorflow"):
            segmenter.segment(image, exemplars=[POSITIVE], score_threshold=0.0)
        text_again = segmenter.segment(image, text="nucleus", score_threshold=0.0)
        np.testing.assert_array_equal(text_again, text_only)


def test_negative_exemplar_changes_the_answer(tiny_concept_model):
    """keras-hub's own graph drops negative boxes (defect 3); ours must not."""
    model = tiny_concept_model
    image = _image()
    both = model.run(_inputs(model, image, "cell", [POSITIVE, NEGATIVE], [1, 0]))
    as_positive = model.run(_inputs(model, image, "cell", [POSITIVE, NEGATIVE], [1, 1]))
    assert np.abs(both["pred_logits"] - as_positive["pred_logits"]).max() > 1e-4


def test_threshold_keeps_only_higher_scores(tiny_concept_model):
    segmenter = ConceptSegmenter(tiny_concept_model)
    image = _image()
    everything = segmenter.predict(image, "nucleus", **EXEMPLARS, score_threshold=0.0)
    assert len(everything) == 8  # every query of the tiny model
    cut = float(np.median(everything.scores))
    kept = segmenter.predict(image, "nucleus", **EXEMPLARS, score_threshold=cut)
    assert 0 < len(kept) < len(everything)
    assert (kept.scores > cut).all()
    np.testing.assert_allclose(kept.scores, everything.scores[everything.scores > cut])
    labels = segmenter.segment(image, "nucleus", **EXEMPLARS, score_threshold=cut)
    assert labels.dtype == np.int32 and labels.shape == SHAPE
    assert set(np.unique(labels)) - {0} <= set(range(1, len(kept) + 1))


def test_stack_is_segmented_slice_by_slice_and_linked(tiny_concept_model):
    segmenter = ConceptSegmenter(tiny_concept_model)
    stack = np.stack([_image()] * 3).astype(np.float32)
    calls = []
    labels = segmenter.segment_volume(
        stack,
        "nucleus",
        **EXEMPLARS,
        score_threshold=0.0,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert labels.shape == (3, *SHAPE) and labels.dtype == np.int32
    # Identical slices give identical objects, linked into the same 3D ids.
    assert labels.max() > 0
    np.testing.assert_array_equal(labels[0], labels[1])
    np.testing.assert_array_equal(labels[1], labels[2])
    # 3 slices x (the text, the image's features, the instances), counted up to the end
    assert calls[-1] == (9, 9)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_cancel_stops_at_the_next_step(tiny_concept_model, monkeypatch):
    """Cancelled once the first slice's image features are done: its decoder never runs."""
    model = tiny_concept_model
    decoded = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda *a, **k: decoded.append(1) or decode(*a, **k))

    def cancel(done, total):
        if done == 2:  # 1: the text's features, 2: the image's
            raise OperationCancelled()

    with pytest.raises(OperationCancelled):
        ConceptSegmenter(model).segment_volume(
            np.stack([_image()] * 2), "cell", **EXEMPLARS, progress=cancel
        )
    assert not decoded


def test_another_number_of_exemplars_recompiles_only_the_prompt_step(tiny_concept_model):
    """The steps compile apart: a new box count does not compile the ViT again."""
    import keras

    if keras.backend.backend() == "torch":
        pytest.skip("torch runs eagerly: nothing is compiled")
    segmenter = ConceptSegmenter(tiny_concept_model)
    segmenter.predict(_image(), "cell", **EXEMPLARS)  # every step compiled (or already)
    before = tiny_concept_model.trace_counts
    three = [POSITIVE, NEGATIVE, (40.0, 4.0, 60.0, 20.0)]  # a count no other test uses
    segmenter.predict(_image(), "cell", three, [1, 0, 1])
    after = tiny_concept_model.trace_counts
    assert after["image_encoder"] == before["image_encoder"]
    assert after["text_encoder"] == before["text_encoder"]
    assert after["decoder"] == before["decoder"] + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "No concept given"),
        ({"text": "   "}, "No concept given"),
        ({"exemplars": [(10, 10, 10, 30)]}, "has no area"),
        ({"exemplars": [(10, 10, 95, 30)]}, "outside the image"),
        ({"exemplars": [(-1, 10, 20, 30)]}, "outside the image"),
        ({"exemplars": [POSITIVE], "exemplar_labels": [2]}, "one label per exemplar"),
        ({"text": "cell", "score_threshold": 1.5}, "score threshold"),
    ],
)
def test_bad_prompts_are_one_clear_error(tiny_concept_model, kwargs, message):
    image = _image()
    before = image.copy()
    with pytest.raises(SAMError, match=message):
        ConceptSegmenter(tiny_concept_model).segment(image, **kwargs)
    np.testing.assert_array_equal(image, before)


def test_a_sam1_model_is_refused(tiny_network):
    with pytest.raises(SAMError, match="not a SAM 1 model"):
        ConceptSegmenter(tiny_network)


def test_no_prompt_is_a_prompt_error(tiny_concept_model):
    with pytest.raises(PromptError):
        ConceptSegmenter(tiny_concept_model).segment_volume(np.stack([_image()] * 2))


def test_conversion_is_cached_and_a_keras_hub_preset_folder_loads(
    tiny_sam3, tiny_concept_model, tmp_path, monkeypatch
):
    """The Hugging Face folder is converted once (cached by content); a keras-hub preset
    folder of the same network loads with the same weights and tokenizer."""
    import json

    from napari_sam_keras import load_concept_model
    from napari_sam_keras.model import sam3_loading
    from napari_sam_keras.model.weights_cache import model_checksum, read_converted

    folder = tiny_sam3[0]
    digest = sam3_loading._checkpoint_hash(folder, sam3_loading._safetensors_files(folder))
    assert read_converted(digest, kind="sam3") is not None

    def no_conversion(*args):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(sam3_loading, "convert_hugging_face", no_conversion)
    again = load_concept_model(folder)
    assert again.key == tiny_concept_model.key
    assert model_checksum(again.backbone) == model_checksum(tiny_concept_model.backbone)

    preset = tmp_path / "sam3_preset"
    tiny_concept_model.backbone.save_to_preset(str(preset))
    assets = preset / "assets" / "tokenizer"
    assets.mkdir(parents=True)
    hf = json.loads((folder / "tokenizer.json").read_text())["model"]
    (assets / "vocabulary.json").write_text(json.dumps(hf["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in hf["merges"]]
    (assets / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    from_preset = load_concept_model(preset)
    assert model_checksum(from_preset.backbone) == model_checksum(tiny_concept_model.backbone)
    for text in ("nucleus", "two cells"):
        np.testing.assert_array_equal(from_preset.tokenizer(text)[0], again.tokenizer(text)[0])
