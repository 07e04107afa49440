"""SAMPredictor against the official SamPredictor with the same random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SEVERAL_GLOBAL, TINY, save_official_checkpoint
from official_sam import install_torchvision_shim

from napari_sam_keras import SAMPredictor, load_model
from napari_sam_keras.keras_layers.vit_encoder import backbone_forward
from napari_sam_keras.model.prompt_path import PromptPath
from napari_sam_keras.processing.images import model_input
from napari_sam_keras.runtime.compiled_call import CompiledCall

install_torchvision_shim()
from segment_anything import SamPredictor  # noqa: E402

# every test here runs again on the other backends (tests/other_backends.py)
pytestmark = pytest.mark.other_backends

LOW_RES_TOL = 1e-3
IOU_TOL = 1e-4


def structured_image(h: int = 300, w: int = 410, seed: int = 0) -> np.ndarray:
    """A non-square RGB image with blobs on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = rng.normal(40, 10, (h, w))
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(10, 40)
        img += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    rgb = np.stack([img, img * 0.8, img * 0.6], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=[TINY, SEVERAL_GLOBAL], ids=["tiny", "several_global"])
def pair(request, tmp_path_factory):
    """(our predictor, official predictor) on the same image and weights."""
    path = tmp_path_factory.mktemp("parity") / "sam.pth"
    official = save_official_checkpoint(request.param, path, seed=3)
    ours = SAMPredictor(load_model(path))
    theirs = SamPredictor(official)
    image = structured_image()
    ours.set_image(image)
    with torch.no_grad():
        theirs.set_image(image)
    return ours, theirs


def assert_same(ours_out, theirs_logits, theirs_out):
    masks, iou, low = ours_out
    t_masks, t_iou, t_low = theirs_out
    assert masks.shape == t_masks.shape and iou.shape == t_iou.shape and low.shape == t_low.shape
    np.testing.assert_allclose(low, t_low, atol=LOW_RES_TOL, rtol=0)
    np.testing.assert_allclose(iou, t_iou, atol=IOU_TOL, rtol=0)
    differ = masks != t_masks
    assert np.all(np.abs(theirs_logits[differ]) < 1e-3), "masks differ away from the threshold"


def test_embedding_matches(pair):
    ours, theirs = pair
    a = ours.get_image_embedding()
    b = theirs.get_image_embedding().numpy()
    assert a.shape == b.shape
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-4


def test_global_attention_in_chunks_matches(pair):
    """Big images take global attention a chunk of query rows at a time; tiny test models
    fit one chunk, so small chunks are forced here (several per head)."""
    ours, theirs = pair
    cfg = ours.config
    forward = backbone_forward(ours.network.model.backbone, cfg, query_chunk=cfg.embedding_size)
    features = CompiledCall(forward)(
        model_input(structured_image(), cfg.image_size, cfg.pixel_mean)
    )
    official = np.transpose(theirs.get_image_embedding().numpy(), (0, 2, 3, 1))
    assert np.linalg.norm(features - official) / np.linalg.norm(official) < 1e-4
    np.testing.assert_allclose(features, ours.embedding_state().features, atol=1e-4)


PROMPTS = {
    "one_point": dict(point_coords=np.array([[120.0, 140.0]]), point_labels=np.array([1])),
    "pos_neg": dict(
        point_coords=np.array([[120.0, 140.0], [330.0, 60.0], [200, 250]]),
        point_labels=np.array([1, 0, 1]),
    ),
    "box": dict(box=np.array([40.0, 50.0, 310.0, 260.0])),
    "box_points": dict(
        box=np.array([40.0, 50.0, 310.0, 260.0]),
        point_coords=np.array([[120.0, 140.0], [300, 70]]),
        point_labels=np.array([1, 0]),
    ),
}


@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
@pytest.mark.parametrize("kind", list(PROMPTS))
def test_prompt_matches(pair, kind, multimask):
    ours, theirs = pair
    prompt = PROMPTS[kind]
    out = ours.predict(multimask_output=multimask, **prompt)
    with torch.no_grad():
        ref = theirs.predict(multimask_output=multimask, **prompt)
        logits = theirs.predict(multimask_output=multimask, return_logits=True, **prompt)[0]
    assert out[0].dtype == bool
    assert_same(out, logits, ref)


@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
def test_predict_best_is_the_top_scoring_mask(pair, multimask):
    ours, _ = pair
    masks, scores, _ = ours.predict(multimask_output=multimask, **PROMPTS["pos_neg"])
    best, score = ours.predict_best(multimask_output=multimask, **PROMPTS["pos_neg"])
    assert best.dtype == bool and best.shape == masks.shape[1:]
    np.testing.assert_array_equal(best, masks[int(np.argmax(scores))])
    assert score == pytest.approx(float(np.max(scores)))


def test_mask_input_from_previous_call(pair):
    ours, theirs = pair
    prompt = PROMPTS["one_point"]
    with torch.no_grad():
        first = theirs.predict(multimask_output=True, **prompt)
    best = first[2][np.argmax(first[1])][None]
    out = ours.predict(mask_input=best, multimask_output=False, **PROMPTS["pos_neg"])
    with torch.no_grad():
        ref = theirs.predict(mask_input=best, multimask_output=False, **PROMPTS["pos_neg"])
        logits = theirs.predict(
            mask_input=best, multimask_output=False, return_logits=True, **PROMPTS["pos_neg"]
        )[0]
    assert_same(out, logits, ref)


def test_logits_returned(pair):
    ours, theirs = pair
    masks, _, _ = ours.predict(return_logits=True, **PROMPTS["box"])
    with torch.no_grad():
        ref = theirs.predict(return_logits=True, **PROMPTS["box"])[0]
    assert masks.dtype == np.float32
    np.testing.assert_allclose(masks, ref, atol=LOW_RES_TOL)


def test_batched_boxes_are_separate_objects(pair):
    ours, theirs = pair
    boxes = np.array([[40.0, 50.0, 310.0, 260.0], [200, 20, 400, 120], [10, 150, 90, 290]])
    masks, iou, low = ours.predict_batch(boxes=boxes, multimask_output=False)
    assert masks.shape == (3, 1, 300, 410) and iou.shape == (3, 1) and low.shape[:2] == (3, 1)
    with torch.no_grad():
        tb = theirs.transform.apply_boxes_torch(torch.as_tensor(boxes), theirs.original_size)
        t_masks, t_iou, t_low = theirs.predict_torch(None, None, boxes=tb, multimask_output=False)
    np.testing.assert_allclose(low, t_low.numpy(), atol=LOW_RES_TOL)
    np.testing.assert_allclose(iou, t_iou.numpy(), atol=IOU_TOL)
    # each box alone gives the same object as in the batch
    single = ours.predict(box=boxes[1], multimask_output=False)
    np.testing.assert_allclose(single[2], low[1], atol=1e-4)


def test_restored_embedding_predicts_the_same(pair):
    ours, _ = pair
    state = ours.embedding_state()
    before = ours.predict(**PROMPTS["one_point"])
    ours.reset_image()
    assert not ours.is_image_set
    ours.set_embedding(state)
    after = ours.predict(**PROMPTS["one_point"])
    np.testing.assert_array_equal(before[2], after[2])


@pytest.mark.parametrize("fold", [True, False], ids=["folded", "direct"])
def test_both_attention_orders_match(pair, fold):
    """The prompt path folds token projections into the weights when that is cheaper
    (big models); tiny test models never qualify, so both orders are forced here."""
    ours, theirs = pair
    predictor = SAMPredictor(ours.network, warm_up=False)
    predictor.prompt_path = PromptPath(ours.network.model, ours.config, fold_weights=fold)
    predictor.set_embedding(ours.embedding_state())
    for kind in ("one_point", "box_points"):
        prompt = PROMPTS[kind]
        out = predictor.predict(**prompt)
        with torch.no_grad():
            ref = theirs.predict(**prompt)
            logits = theirs.predict(return_logits=True, **prompt)[0]
        assert_same(out, logits, ref)
    # the automatic generator's batched path (no mask inputs, fewest point slots)
    points = np.array([[[30.0, 40.0]], [[200.0, 150.0]], [[390.0, 280.0]]])
    low, iou = predictor.predict_input_frame(
        points * predictor.input_size[0] / 300, np.ones((3, 1), np.int64)
    )
    with torch.no_grad():
        tp = torch.as_tensor(points * predictor.input_size[0] / 300, dtype=torch.float32)
        _, t_iou, t_low = theirs.predict_torch(tp, torch.ones(3, 1), multimask_output=True)
    np.testing.assert_allclose(low, t_low.numpy(), atol=LOW_RES_TOL)
    np.testing.assert_allclose(iou, t_iou.numpy(), atol=IOU_TOL)
