"""keras-hub 0.32's SAM 3 defects: each correction of ours, and whether upstream still needs it.

``test_upstream_still_has_the_defects`` fails the day a keras-hub release fixes one:
then remove our correction (see ``napari_sam_keras/keras_layers/sam3_fixes.py`` and
``docs/keras-hub-sam3-issues.md``).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras_hub")

from napari_sam_keras.model.clip_tokenizer import CLIPTokenizer
from napari_sam_keras.model.sam3_loading import upstream_defects
from napari_sam_keras.segmentation.concept_segmenter import (
    ConceptResult,
    drop_cut_instances,
    merge_tiles,
)
from napari_sam_keras.segmentation.tiling import TileGrid

WHERE = {
    "tokenizer_needs_tensorflow_text": "model/clip_tokenizer.py",
    "text_encoder_bidirectional": "keras_layers/sam3_fixes.causal_text_features",
    "negative_boxes_ignored": "keras_layers/sam3_fixes.ConceptForward",
}


def test_upstream_still_has_the_defects(tiny_concept_model):
    found = upstream_defects(tiny_concept_model.backbone)
    fixed = [name for name, present in found.items() if not present]
    assert not fixed, (
        "keras-hub fixed "
        + ", ".join(f"{n} (drop our correction in {WHERE[n]})" for n in fixed)
        + "; update docs/keras-hub-sam3-issues.md."
    )


def test_tokenizer_matches_transformers(tiny_sam3):
    """Defect 1: our CLIP tokenizer gives transformers' ids, without tensorflow-text."""
    folder, _, theirs = tiny_sam3
    ours = CLIPTokenizer.from_folder(folder)
    for text in ("nucleus", "Nucleus  cell", "debris, cell!", "visual 42", "zebra"):
        ids, mask = ours(text)
        want = theirs([text], padding="max_length", max_length=32, return_tensors="np")
        np.testing.assert_array_equal(ids, want["input_ids"], err_msg=text)
        np.testing.assert_array_equal(mask, want["attention_mask"], err_msg=text)


def test_text_features_are_causal(tiny_concept_model):
    """Defect 2: a token's features do not depend on later tokens (they do in keras-hub's)."""
    from napari_sam_keras.keras_layers.sam3_fixes import (
        bidirectional_text_features,
        causal_text_features,
    )

    encoder = tiny_concept_model.backbone.text_encoder
    a = np.array([[1, 2, 3, 4]], np.int32)
    b = np.array([[1, 2, 3, 9]], np.int32)
    mask = np.ones((1, 4), np.int32)
    ours_a, ours_b = (np.asarray(causal_text_features(encoder, x, mask)) for x in (a, b))
    np.testing.assert_allclose(ours_a[:, :3], ours_b[:, :3], atol=1e-6)
    assert np.abs(ours_a[:, 3] - ours_b[:, 3]).max() > 1e-4
    theirs_a, theirs_b = (np.asarray(bidirectional_text_features(encoder, x, mask)) for x in (a, b))
    assert np.abs(theirs_a[:, 0] - theirs_b[:, 0]).max() > 1e-4


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _result(masks, scores, shape):
    masks = np.asarray(masks, bool)
    return ConceptResult(masks, np.asarray(scores, np.float32), np.zeros((len(masks), 4)), shape)


def test_an_instance_on_a_tile_border_is_found_once():
    """Two tiles both see a disc on their border (in their halo): one instance remains."""
    shape = (40, 80)
    grid = TileGrid(shape, (40, 40), halo=12)
    left, right = grid[0], grid[1]
    disc = _disc(shape, 20, 40, 6)  # across the border x = 40
    other = _disc(shape, 20, 10, 5)  # inside the left tile only
    parts = []
    for tile, masks, scores in ((left, [disc, other], [0.8, 0.7]), (right, [disc], [0.9])):
        y0, y1, x0, x1 = tile.outer
        result = _result([m[y0:y1, x0:x1] for m in masks], scores, tile.shape)
        parts.append((drop_cut_instances(result, tile, shape), tile))
    merged = merge_tiles(parts, shape, nms_threshold=0.7)
    assert len(merged) == 2
    np.testing.assert_array_equal(merged.masks[0], disc)  # the higher score, once
    np.testing.assert_array_equal(merged.masks[1], other)
    np.testing.assert_allclose(merged.scores, [0.9, 0.7])


def test_an_instance_cut_by_the_tile_edge_is_dropped():
    shape = (40, 80)
    grid = TileGrid(shape, (40, 40), halo=4)
    tile = grid[0]  # outer block x 0..44
    cut = _disc(shape, 20, 44, 8)[:, :44]  # runs off the right edge of the outer block
    whole = _disc(shape, 20, 20, 5)[:, :44]
    kept = drop_cut_instances(_result([cut, whole], [0.9, 0.8], tile.shape), tile, shape)
    assert len(kept) == 1
    np.testing.assert_array_equal(kept.masks[0], whole)


@pytest.mark.parametrize("query_chunk", [1024, 16])
def test_our_vit_forward_equals_keras_hubs(tiny_concept_model, query_chunk):
    """Our ViT pass (attention per window / per head and chunk of query rows) gives
    keras-hub's vision encoder's FPN levels and position encodings.  A chunk of 16 query
    tokens takes the global layer one head and two grid rows at a time."""
    from napari_sam_keras.keras_layers.sam3_forward import vit_features

    encoder = tiny_concept_model.backbone.vision_encoder
    size = encoder.image_shape[0]
    pixels = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype("float32")
    want_fpn, want_pos = encoder(pixels)
    got_fpn, got_pos = vit_features(encoder, pixels, query_chunk=query_chunk)
    for got, want in zip([*got_fpn, *got_pos], [*want_fpn, *want_pos], strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("query_chunk", [1024, 8])
def test_our_detr_encoder_forward_equals_keras_hubs(tiny_concept_model, query_chunk):
    from napari_sam_keras.keras_layers.sam3_forward import detr_encoder_features

    encoder = tiny_concept_model.backbone.detr_encoder
    rng = np.random.default_rng(1)
    d = encoder.hidden_dim
    vision = rng.standard_normal((1, encoder.height, encoder.width, d)).astype("float32")
    position = rng.standard_normal(vision.shape).astype("float32")
    text = rng.standard_normal((1, 5, d)).astype("float32")
    masks = np.array([[True, True, True, False, True]])
    want = encoder(
        vision_features=vision, text_features=text, vision_pos_embeds=position, text_masks=masks
    )
    got = detr_encoder_features(encoder, vision, text, position, masks, query_chunk=query_chunk)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=2e-5, rtol=1e-4)
