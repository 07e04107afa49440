"""Throughput of ``segment_batch``: in-process vs a local dask cluster, in one run.

Writes N synthetic images and a random official-format checkpoint, then segments the
folder in this process and again with ``workers=W`` (a LocalCluster of W processes),
each into its own output folder, and prints images per minute for both and their ratio.
The distributed wall time includes starting the cluster and loading the model in every
worker, as a user's run would; the outputs of both runs are checked to be identical.

    python benchmarks/batch_throughput.py                     # tiny model, 8 images
    python benchmarks/batch_throughput.py --size small --images 16 --workers 2

Timings on a shared machine are noisy: compare the ratio of one run, not numbers across
runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the official SAM builder of the test helpers


def write_images(folder: Path, count: int, size: int) -> list[Path]:
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    for i in range(count):
        image = rng.normal(300, 30, (size, size))
        for _ in range(12):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 40, size / 12)]
            image += 2000 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
        path = folder / f"field_{i:03d}.tif"
        tifffile.imwrite(path, image.astype(np.uint16))
        paths.append(path)
    return paths


def model_config(size: str):
    from helpers import TINY

    from napari_sam_keras.model.config import SAMConfig

    if size == "tiny":
        return TINY
    # a small ViT at SAM's real input size: the image encoder dominates, as with ViT-B
    return SAMConfig(
        image_size=1024,
        encoder_embed_dim=192,
        encoder_depth=4,
        encoder_num_heads=3,
        encoder_global_attn_indexes=(1, 3),
        prompt_embed_dim=256,
        decoder_mlp_dim=2048,
        iou_head_hidden_dim=256,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--points-per-side", type=int, default=16)
    args = parser.parse_args()

    from helpers import save_official_checkpoint

    from napari_sam_keras import segment_batch
    from napari_sam_keras.files.batch_files import read_label_output

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["NAPARI_SAM_KERAS_CACHE_DIR"] = str(tmp / "cache")
        images = write_images(tmp / "images", args.images, args.image_size)
        checkpoint = tmp / "model.pth"
        save_official_checkpoint(model_config(args.size), checkpoint)
        options = dict(points_per_side=args.points_per_side, model=checkpoint)

        # convert the checkpoint once, so neither run pays for it; both runs load the model
        from napari_sam_keras import load_model
        from napari_sam_keras.segmentation import batch

        load_model(checkpoint)
        batch._NETWORKS.clear()
        batch._GENERATORS.clear()

        t0 = time.perf_counter()
        local = segment_batch(images, tmp / "in-process", **options)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        dist = segment_batch(images, tmp / "workers", workers=args.workers, **options)
        t_dist = time.perf_counter() - t0
        assert local.ok and dist.ok
        for row in local.rows:
            name = Path(row["output"]).name
            a = read_label_output(Path(row["output"]))
            b = read_label_output(tmp / "workers" / name)
            assert np.array_equal(a, b), f"{name} differs"

    n = args.images
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"model {args.size}, {n} images of {args.image_size}^2, points_per_side "
          f"{args.points_per_side}")  # fmt: skip
    print(f"in-process : {t_local:7.1f} s  {60 * n / t_local:7.1f} images/min "
          "(model load included; Keras already imported)")  # fmt: skip
    print(f"workers={args.workers}  : {t_dist:7.1f} s  {60 * n / t_dist:7.1f} images/min "
          f"(cluster start and a model load per worker included)")  # fmt: skip
    print(f"ratio workers / in-process throughput: {t_local / t_dist:.2f}")
    print(f"model loads per worker: {dist.model_loads}")


if __name__ == "__main__":
    main()
