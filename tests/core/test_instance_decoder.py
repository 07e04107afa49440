"""micro-sam checkpoints, the instance decoder ("AIS") and its watershed.

The oracle is torch-em's ``UNETR`` (``pip install --no-deps torch-em``; only
its model files are imported, see ``tests/torch_em_oracle.py``) with the same
random weights, run on the same stored embedding.  Checkpoints are made here
with random weights of the official SAM and of torch-em's decoder and saved
the way micro-sam saves them.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_sam_keras import ImageEmbedding, InstanceSegmenter, ModelLoadError, SAMError
from napari_sam_keras.processing.instance_watershed import (
    WatershedSettings,
    instance_labels,
    settings_for_model,
    watershed_from_center_and_boundary_distances,
)

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import torch_em_oracle  # noqa: E402
from helpers import TINY  # noqa: E402

needs_torch_em = pytest.mark.skipif(
    not torch_em_oracle.torch_em_available(), reason="torch and torch-em are needed"
)

#: TINY: 256 px input -> a 16 x 16 x 32 embedding -> 256 x 256 decoder maps.
#: A non-square image: its input frame (256, 171) is cropped from the padded 256 x 256.
ORIGINAL_SIZE = (300, 200)
INPUT_SIZE = (256, 171)


# --- checkpoints made like micro-sam's ---------------------------------------------------------


@pytest.fixture(scope="module")
def torch_models():
    """(official tiny Sam, UNETR bilinear, UNETR transposed-conv with 16 initial features)."""
    if not torch_em_oracle.torch_em_available():
        pytest.skip("torch and torch-em are needed")
    from official_sam import build_official_sam

    sam = build_official_sam(TINY, seed=0)
    bilinear = torch_em_oracle.build_unetr(sam.image_encoder, conv_transpose=False, seed=1)
    transposed = torch_em_oracle.build_unetr(
        sam.image_encoder, conv_transpose=True, seed=2, initial_features=16
    )
    return sam, bilinear, transposed


@pytest.fixture(scope="module")
def files(torch_models, tmp_path_factory):
    """Checkpoint files in every layout micro-sam writes."""
    import torch

    sam, bilinear, transposed = torch_models
    root = tmp_path_factory.mktemp("micro_sam")
    sam_state = sam.state_dict()
    decoder = torch_em_oracle.decoder_state(bilinear)
    out = {}
    # torch-em training format: SAM keys under "sam.", decoder beside them in one file
    out["training"] = root / "vit_b_lm_training.pt"
    torch.save(
        {
            "model_state": OrderedDict((f"sam.{k}", v) for k, v in sam_state.items()),
            "decoder_state": decoder,
        },
        out["training"],
    )
    # micro_sam.util.export_custom_sam_model(..., with_segmentation_decoder=True)
    out["exported"] = root / "exported.pt"
    torch.save({"model_state": sam_state, "decoder_state": decoder}, out["exported"])
    # released models: a plain SAM state dict and <name>_decoder.pt beside it
    out["plain"] = root / "vit_b_lm.pt"
    torch.save(sam_state, out["plain"])
    torch.save(decoder, root / "vit_b_lm_decoder.pt")
    # micro-sam's download cache names files without a suffix
    cache_dir = root / "microsam_cache"
    cache_dir.mkdir()
    out["no_suffix"] = cache_dir / "vit_b_em_organelles"
    torch.save(sam_state, out["no_suffix"])
    torch.save(decoder, cache_dir / "vit_b_em_organelles_decoder")
    # a SAM without decoder, and a decoder of the other upsampling variant
    out["sam_only"] = root / "sam_only.pth"
    torch.save(sam_state, out["sam_only"])
    out["transposed_decoder"] = root / "other_decoder.pt"
    torch.save(torch_em_oracle.decoder_state(transposed), out["transposed_decoder"])
    return out


@pytest.fixture(scope="module")
def embedding_features():
    return np.random.default_rng(7).standard_normal((1, 16, 16, 32)).astype(np.float32)


def _embedding(network, features) -> ImageEmbedding:
    return ImageEmbedding(
        features=features,
        original_size=ORIGINAL_SIZE,
        input_size=INPUT_SIZE,
        model_key=network.key,
    )


def _reference(unetr, features) -> np.ndarray:
    return torch_em_oracle.reference_maps(unetr, features, INPUT_SIZE, ORIGINAL_SIZE)[0]


def _check_parity(network, unetr, features) -> None:
    maps = InstanceSegmenter(network).predict_maps(_embedding(network, features))
    ref = _reference(unetr, features)
    assert maps.dtype == np.float32 and maps.shape == (3, *ORIGINAL_SIZE)
    # random weights that do not saturate the sigmoid, so the comparison means something
    assert np.all(ref.std(axis=(1, 2)) > 0.05)
    np.testing.assert_allclose(maps, ref, rtol=0, atol=1e-4)


# --- parity with torch-em ----------------------------------------------------------------------


@needs_torch_em
@pytest.mark.other_backends
def test_parity_bilinear_decoder(files, torch_models, embedding_features):
    from napari_sam_keras import load_model

    network = load_model(files["exported"])
    assert network.instance_decoder is not None
    assert not network.instance_decoder.config.conv_transpose
    assert network.instance_decoder.config.features == (512, 256, 128, 64)
    _check_parity(network, torch_models[1], embedding_features)


@needs_torch_em
@pytest.mark.other_backends
def test_parity_transposed_conv_decoder(files, torch_models, embedding_features):
    from napari_sam_keras import load_model

    network = load_model(files["sam_only"], decoder=files["transposed_decoder"])
    config = network.instance_decoder.config
    assert config.conv_transpose and config.features == (128, 64, 32, 16)
    _check_parity(network, torch_models[2], embedding_features)


# --- checkpoint layouts, cache, errors ---------------------------------------------------------


def _decoder_weights(network) -> list[np.ndarray]:
    return [np.asarray(v.numpy()) for v in network.instance_decoder.model.weights]


@needs_torch_em
@pytest.mark.parametrize("layout", ["training", "exported", "plain", "no_suffix"])
def test_micro_sam_layouts_load_with_decoder(files, layout):
    from napari_sam_keras import load_model

    network = load_model(files[layout])
    assert network.config == TINY
    assert network.instance_decoder is not None
    reference = load_model(files["exported"])
    for ours, theirs in zip(_decoder_weights(network), _decoder_weights(reference), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(network.model.weights, reference.model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(ours.numpy()), np.asarray(theirs.numpy()))


@needs_torch_em
@pytest.mark.parametrize("layout", ["training", "plain"])
def test_second_load_hits_the_cache(files, layout, monkeypatch):
    from napari_sam_keras import load_model
    from napari_sam_keras.model import torch_checkpoints

    first = load_model(files[layout])

    def no_torch(path):
        raise AssertionError(f"{path} was read again instead of the converted cache")

    monkeypatch.setattr(torch_checkpoints, "read_torch_file", no_torch)
    again = load_model(files[layout])
    assert again.key == first.key and again.instance_decoder is not None
    for ours, theirs in zip(_decoder_weights(again), _decoder_weights(first), strict=True):
        np.testing.assert_array_equal(ours, theirs)


@needs_torch_em
def test_sam_without_decoder(files):
    from napari_sam_keras import load_model

    network = load_model(files["sam_only"])
    assert network.instance_decoder is None
    with pytest.raises(SAMError, match="no instance-segmentation decoder"):
        InstanceSegmenter(network)


@needs_torch_em
def test_missing_decoder_tensor_is_named(files, torch_models, tmp_path):
    import torch

    from napari_sam_keras import load_model

    state = torch_em_oracle.decoder_state(torch_models[1])
    del state["decoder.blocks.1.block.4.weight"]
    path = tmp_path / "broken_decoder.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"decoder\.blocks\.1\.block\.4\.weight"):
        load_model(files["sam_only"], decoder=path)


@needs_torch_em
def test_misshapen_decoder_tensor_is_named(files, torch_models, tmp_path):
    import torch

    from napari_sam_keras import load_model

    state = torch_em_oracle.decoder_state(torch_models[1])
    state["deconv2.block.1.block.weight"] = torch.zeros(256, 256, 1, 1)
    path = tmp_path / "vit_x_lm.pt"
    torch.save({"model_state": torch_models[0].state_dict(), "decoder_state": state}, path)
    with pytest.raises(
        ModelLoadError, match=r"deconv2\.block\.1\.block\.weight.*\(256, 256, 1, 1\)"
    ):
        load_model(path)


@needs_torch_em
def test_segment_an_image(files):
    from napari_sam_keras import load_model

    network = load_model(files["plain"])
    segmenter = InstanceSegmenter(network)
    assert segmenter.settings == settings_for_model("vit_b_lm")
    image = np.random.default_rng(3).integers(0, 255, ORIGINAL_SIZE, dtype=np.uint8)
    maps = segmenter.predict_maps(image)
    assert maps.shape == (3, *ORIGINAL_SIZE) and maps.dtype == np.float32
    # the embedding the predictor made for the image gives the same maps
    again = segmenter.predict_maps(segmenter.predictor.embedding_state())
    np.testing.assert_array_equal(maps, again)
    labels = segmenter.segment(image, min_size=5, foreground_threshold=0.3)
    assert labels.dtype == np.int32 and labels.shape == ORIGINAL_SIZE
    settings = segmenter.settings.updated(min_size=5, foreground_threshold=0.3)
    np.testing.assert_array_equal(labels, instance_labels(maps, settings))
    with pytest.raises(SAMError, match="Unknown watershed settings"):
        segmenter.segment(image, centre_threshold=0.2)


@needs_torch_em
def test_tiled_segmentation_pastes_each_tiles_inner_block(files):
    from napari_sam_keras import load_model
    from napari_sam_keras.segmentation.tiling import TileGrid

    segmenter = InstanceSegmenter(load_model(files["plain"]))
    image = np.random.default_rng(4).integers(0, 255, ORIGINAL_SIZE, dtype=np.uint8)
    # one tile holding the whole image: exactly the untiled maps
    whole = segmenter.predict_tiled_maps(image, tile_shape=1024)
    np.testing.assert_array_equal(whole, segmenter.predict_maps(image))
    # several tiles: each inner block comes from its own halo-grown tile
    tiled = segmenter.predict_tiled_maps(image, tile_shape=(128, 96), halo=32)
    grid = TileGrid(ORIGINAL_SIZE, (128, 96), 32)
    assert len(grid) > 2
    for tile in grid:
        y0, y1, x0, x1 = tile.outer
        own = segmenter.predict_maps(image[y0:y1, x0:x1])
        iy0, iy1, ix0, ix1 = tile.inner
        np.testing.assert_array_equal(
            tiled[:, iy0:iy1, ix0:ix1], own[:, iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        )
    labels = segmenter.segment(image, tile_shape=(128, 96), halo=32, min_size=5)
    settings = segmenter.settings.updated(min_size=5)
    np.testing.assert_array_equal(labels, instance_labels(tiled, settings))
    with pytest.raises(SAMError, match="halo was given without tile_shape"):
        segmenter.segment(image, halo=32)


# --- the watershed -----------------------------------------------------------------------------


def _distance_maps(labels: np.ndarray) -> np.ndarray:
    """(foreground, centre distance, boundary distance) as the decoder is trained to give them."""
    fg = (labels > 0).astype(np.float32)
    center = np.ones(labels.shape, np.float32)
    boundary = np.ones(labels.shape, np.float32)
    yy, xx = np.indices(labels.shape)
    for obj in range(1, labels.max() + 1):
        mask = labels == obj
        cy, cx = yy[mask].mean(), xx[mask].mean()
        dist = np.hypot(yy - cy, xx - cx)[mask]
        center[mask] = dist / dist.max()
        edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][mask]
        boundary[mask] = 1.0 - edt / edt.max()
    return np.stack([fg, center, boundary])


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering, background 0 kept."""
    pairs = {(int(x), int(y)) for x, y in zip(a.ravel(), b.ravel(), strict=True)}
    left = {x for x, _ in pairs}
    right = {y for _, y in pairs}
    return len(pairs) == len(left) == len(right) and (0, 0) in pairs


def _shapes() -> np.ndarray:
    labels = np.zeros((120, 160), np.int32)
    yy, xx = np.indices(labels.shape)
    labels[np.hypot(yy - 30, xx - 30) < 18] = 1  # a disc
    labels[60:100, 10:50] = 2  # a square
    labels[((yy - 40) / 15) ** 2 + ((xx - 100) / 30) ** 2 < 1] = 3  # an ellipse
    labels[np.hypot(yy - 95, xx - 110) < 14] = 4  # two touching discs
    labels[np.hypot(yy - 95, xx - 137) < 14] = 5
    labels[10:14, 140:144] = 6  # 16 pixels: below the minimum size
    return labels


def test_watershed_returns_the_known_objects():
    truth = _shapes()
    maps = _distance_maps(truth)
    expected = truth.copy()
    expected[expected == 6] = 0
    # the default distance smoothing, a foreground map taken as it is
    labels = instance_labels(maps, WatershedSettings(min_size=20, foreground_smoothing=0.0))
    assert labels.dtype == np.int32
    assert labels.max() == 5 and set(np.unique(labels)) == set(range(6))
    assert _same_partition(labels, expected)
    # smoothing this binary foreground map as well changes a few edge pixels of its mask
    # (the square's corners, the notch between the touching discs), nothing else
    smoothed = instance_labels(maps, WatershedSettings(min_size=20))
    edge = (smoothed > 0) != (expected > 0)
    assert 0 < edge.sum() <= 8
    assert _same_partition(np.where(edge, 0, smoothed), np.where(edge, 0, expected))


def test_watershed_thresholds_decide_the_seeds():
    truth = _shapes()
    fg, center, boundary = _distance_maps(truth)
    kept = watershed_from_center_and_boundary_distances(
        center, boundary, fg, distance_smoothing=0.0, min_size=0
    )
    assert _same_partition(kept, truth)
    # no seed anywhere (thresholds below every distance): no object
    none = watershed_from_center_and_boundary_distances(
        center, boundary, fg, center_distance_threshold=0.0, min_size=0
    )
    assert none.max() == 0
    # a foreground threshold above the foreground map: no object either
    assert (
        watershed_from_center_and_boundary_distances(
            center, boundary, fg, foreground_threshold=1.0
        ).max()
        == 0
    )


def test_model_settings_follow_micro_sam():
    assert settings_for_model("/models/vit_b_lm.pt").center_distance_threshold == 0.4
    em = settings_for_model("vit_b_em_organelles_decoder")
    assert (em.center_distance_threshold, em.boundary_distance_threshold) == (0.3, 0.4)
    assert settings_for_model("sam_vit_b_01ec64.pth") == WatershedSettings()
