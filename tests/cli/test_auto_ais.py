"""``napari-sam-keras auto --mode ais``: the instance decoder from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers import run_cli as run

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import torch_em_oracle  # noqa: E402
from helpers import TINY  # noqa: E402

pytestmark = pytest.mark.skipif(
    not torch_em_oracle.torch_em_available(), reason="torch and torch-em are needed"
)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A tiny SAM as micro-sam releases it: vit_b_lm.pt + vit_b_lm_decoder.pt; and a bare SAM."""
    import torch
    from official_sam import build_official_sam

    root = tmp_path_factory.mktemp("models")
    sam = build_official_sam(TINY, seed=0)
    unetr = torch_em_oracle.build_unetr(sam.image_encoder, seed=3, initial_features=16)
    torch.save(sam.state_dict(), root / "vit_b_lm.pt")
    torch.save(torch_em_oracle.decoder_state(unetr), root / "vit_b_lm_decoder.pt")
    torch.save(sam.state_dict(), root / "plain_sam.pth")
    return root


@pytest.fixture
def image_tif(tmp_path):
    yy, xx = np.mgrid[:48, :64]
    image = 200 + 3000 * ((yy - 15) ** 2 + (xx - 18) ** 2 < 60)
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image.astype(np.uint16))
    return path


def test_auto_ais_writes_the_segmenters_labels(capsys, model_files, image_tif, tmp_path):
    from napari_sam_keras import InstanceSegmenter, load_model

    out = tmp_path / "ais.npy"
    model = model_files / "vit_b_lm.pt"
    argv = ["auto", image_tif, "--model", model, "--mode", "ais", "--min-size", 3]
    status, stdout, err = run(capsys, *argv, "--center-distance-thresh", 0.6, "--out", out)
    assert status == 0, err
    assert f"wrote {out}" in stdout
    labels = np.load(out)
    assert labels.shape == (48, 64)
    expected = InstanceSegmenter(load_model(model)).segment(
        tifffile.imread(image_tif), center_distance_threshold=0.6, min_size=3
    )
    np.testing.assert_array_equal(labels, expected)

    tiled_out = tmp_path / "ais-tiled.npy"
    argv = ["auto", image_tif, "--model", model, "--mode", "ais", "--min-size", 3]
    status, _, err = run(
        capsys, *argv, "--tile-shape", "32,32", "--halo", "8,8", "--out", tiled_out
    )
    assert status == 0, err
    tiled = InstanceSegmenter(load_model(model)).segment(
        tifffile.imread(image_tif), tile_shape=(32, 32), halo=(8, 8), min_size=3
    )
    np.testing.assert_array_equal(np.load(tiled_out), tiled)


def test_auto_ais_needs_a_decoder(capsys, model_files, image_tif, tmp_path):
    model = model_files / "plain_sam.pth"
    out = tmp_path / "ais.npy"
    status, _, err = run(capsys, "auto", image_tif, "--model", model, "--mode", "ais", "--out", out)
    assert status != 0
    assert "no instance-segmentation decoder" in err
    assert not out.exists()
    # the decoder can be named explicitly
    decoder = model_files / "vit_b_lm_decoder.pt"
    argv = ["auto", image_tif, "--model", model, "--mode", "ais", "--decoder", decoder]
    status, stdout, err = run(capsys, *argv, "--out", out)
    assert status == 0, err
    assert out.exists()


def test_auto_ais_reads_a_precomputed_store(capsys, model_files, image_tif, tmp_path, monkeypatch):
    from napari_sam_keras.model.image_encoder import ImageEncoder

    model = model_files / "vit_b_lm.pt"
    store = tmp_path / "cells.zarr"
    status, _, err = run(capsys, "embed", image_tif, "--model", model, "--out", store)
    assert status == 0, err
    plain = tmp_path / "plain.npy"
    argv = ["auto", image_tif, "--model", model, "--mode", "ais", "--min-size", 3]
    assert run(capsys, *argv, "--out", plain)[0] == 0

    calls = []
    for name in ("embed", "embed_resized"):
        real = getattr(ImageEncoder, name)

        def counted(self, *args, _real=real, **kwargs):
            calls.append(1)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(ImageEncoder, name, counted)
    stored = tmp_path / "stored.npy"
    status, _, err = run(capsys, *argv, "--embeddings", store, "--out", stored)
    assert status == 0, err
    assert calls == []  # the embedding came from the store
    np.testing.assert_array_equal(np.load(stored), np.load(plain))
