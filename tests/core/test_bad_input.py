"""User mistakes give clear exceptions, not crashes deep inside Keras."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras import ImageError, PromptError, SAMPredictor


@pytest.fixture(scope="module")
def predictor(tiny_network):
    p = SAMPredictor(tiny_network)
    p.set_image(np.random.default_rng(0).integers(0, 255, (100, 140, 3), dtype=np.uint8))
    return p


def test_predict_before_set_image(tiny_network):
    with pytest.raises(ImageError, match="set_image"):
        SAMPredictor(tiny_network).predict(point_coords=[[1, 1]], point_labels=[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "No prompt"),
        (dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)), "empty"),
        (dict(point_coords=[[150, 20]], point_labels=[1]), "outside the image"),
        (dict(point_coords=[[-1, 20]], point_labels=[1]), "outside the image"),
        (dict(point_coords=[[10, 20], [30, 40]], point_labels=[1]), "one label"),
        (dict(point_coords=[[10, 20]]), "together"),
        (dict(point_labels=[1]), "without point_coords"),
        (dict(point_coords=[[10, 20, 3]], point_labels=[1]), r"\(N, 2\)"),
        (dict(point_coords=[[10, 20]], point_labels=[2]), "1 \\(positive\\) or 0"),
        (dict(point_coords=[[np.nan, 20]], point_labels=[1]), "NaN"),
        (dict(box=[1, 2, 3]), r"\(4,\)"),
        (dict(box=[50, 50, 10, 10]), "x0 <= x1"),
        (dict(box=[0, 0, 500, 50]), "outside the image"),
        (dict(mask_input=np.zeros((1, 10, 10))), "low-res logits"),
    ],
)
def test_bad_prompts(predictor, kwargs, match):
    with pytest.raises(PromptError, match=match):
        predictor.predict(**kwargs)


def test_bad_batches(predictor):
    with pytest.raises(PromptError, match=r"\(B, 4\)"):
        predictor.predict_batch(boxes=[1, 2, 3, 4])
    with pytest.raises(PromptError, match="differ in length"):
        predictor.predict_batch(
            boxes=[[1, 2, 3, 4]], point_coords=np.ones((2, 1, 2)), point_labels=np.ones((2, 1))
        )
    with pytest.raises(PromptError, match="No prompt"):
        predictor.predict_batch()


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((2, 3, 40, 40), np.uint8), "2D grayscale"),
        (np.zeros((40, 40, 5), np.uint8), "2D grayscale"),
        (np.zeros((40,), np.uint8), "2D grayscale"),
        (np.full((40, 40), np.nan, np.float32), "NaN"),
        (np.array([["a"]]), "dtype"),
    ],
    ids=["4d", "5_channels", "1d", "nan", "strings"],
)
def test_bad_images(tiny_network, image, match):
    p = SAMPredictor(tiny_network)
    with pytest.raises(ImageError, match=match):
        p.set_image(image)
    assert not p.is_image_set


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(1).integers(0, 4000, (50, 60), dtype=np.uint16),
        np.random.default_rng(1).normal(size=(50, 60)).astype(np.float32),
        np.random.default_rng(1).integers(0, 255, (50, 60, 4), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 255, (50, 60, 1), dtype=np.uint8),
    ],
    ids=["uint16", "float", "rgba", "one_channel"],
)
def test_accepted_images(tiny_network, image):
    p = SAMPredictor(tiny_network)
    p.set_image(image)
    assert p.original_size == (50, 60)


def test_contrast_limits_map_to_uint8():
    from napari_sam_keras.processing.images import to_rgb_uint8

    img = np.array([[100, 200], [300, 400]], np.uint16)
    out = to_rgb_uint8(img, contrast_limits=(200, 300))
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[0, 0], [255, 255]])
    np.testing.assert_array_equal(to_rgb_uint8(img)[..., 0], [[0, 85], [170, 255]])
