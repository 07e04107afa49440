"""Helpers shared by the tests: tiny SAM architectures and official-format checkpoints."""

from __future__ import annotations

from pathlib import Path

from napari_sam_keras.model.config import SAMConfig

#: A tiny SAM: 2 encoder blocks (1 global), 256 px input, 32-dim prompts.
TINY = SAMConfig(
    image_size=256,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)

#: A larger one with several global blocks and windows that need padding.
SEVERAL_GLOBAL = SAMConfig(
    image_size=512,
    encoder_embed_dim=48,
    encoder_depth=4,
    encoder_num_heads=3,
    encoder_global_attn_indexes=(1, 3),
    prompt_embed_dim=64,
    decoder_mlp_dim=128,
    iou_head_hidden_dim=64,
)


def save_official_checkpoint(config: SAMConfig, path: Path, seed: int = 0):
    """Save a random official SAM of ``config`` as ``path`` (.pth); return the torch model."""
    import torch
    from official_sam import build_official_sam

    sam = build_official_sam(config, seed=seed)
    torch.save(sam.state_dict(), path)
    return sam


def write_cell_images(folder: Path, count: int, shape: tuple[int, int] = (48, 64)) -> list[Path]:
    """``count`` small uint16 TIFFs ``cells_00.tif``, ... with two bright blobs that move."""
    import numpy as np
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    paths = []
    for i in range(count):
        image = 200 + 3000 * ((yy - 15 - i) ** 2 + (xx - 18) ** 2 < 60)
        image = image + 2000 * ((yy - 30) ** 2 + (xx - 45 + 2 * i) ** 2 < 80)
        path = folder / f"cells_{i:02d}.tif"
        tifffile.imwrite(path, image.astype(np.uint16))
        paths.append(path)
    return paths


def run_pytest_on_backend(backend: str, args: list[str], cwd: Path, cache_dir: Path, timeout=1200):
    """Run pytest with ``args`` in a process of its own on Keras ``backend``; return its stdout.

    Keras fixes its backend at import, so the parity tests run again on each other backend
    this way.  Skips for the backend this process runs on and for one that is not installed;
    fails with the output's tail when the run fails.
    """
    import importlib.util
    import os
    import subprocess
    import sys

    import keras
    import pytest

    if backend == keras.backend.backend():
        pytest.skip("this process runs these tests on this backend")
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, NAPARI_SAM_KERAS_BACKEND=backend)
    env["NAPARI_SAM_KERAS_CACHE_DIR"] = str(cache_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"{backend} backend failed:\n{tail}"
    return proc.stdout


class CountingEncoder:
    """Counts the image encoder's forward passes of ``predictor`` (the real ones run)."""

    def __init__(self, predictor) -> None:
        self.encoder = predictor.image_encoder
        self.call = self.encoder.compiled
        self.calls = 0

    def __enter__(self) -> CountingEncoder:
        def counting(batch):
            self.calls += 1
            return self.call(batch)

        self.encoder.compiled = counting
        return self

    def __exit__(self, *exc) -> None:
        self.encoder.compiled = self.call


def run_cli(capsys, *argv):
    """``napari-sam-keras ARGV`` in this process -> (exit status, stdout, stderr); argparse's
    exits (--help, usage errors) become statuses."""
    from napari_sam_keras import cli

    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err
