"""Throughput of ``segment_batch``: in-process vs a local dask cluster, in one run.

Writes N synthetic images and a random official-format checkpoint, then segments the
folder in this process and again with ``workers=W`` (a LocalCluster of W processes),
each into its own output folder, and prints images per minute for both and their ratio.
The distributed wall time includes starting the cluster and loading the model in every
worker, as a user's run would; the outputs of both runs are checked to be identical.

    python benchmarks/batch_throughput.py                     # tiny model, 8 images
    python benchmarks/batch_throughput.py --size small --images 16 --workers 2

``--mode ais`` measures the instance decoder instead (the model gets a random decoder and
is saved as a model folder), in images per hour, in-process and with W workers for each
``--cores-per-worker`` value: each worker process is pinned to that many cores
(``sched_setaffinity``, round robin over this machine's cores), so the math library of
each worker uses that many threads; 0 leaves the workers unpinned (each sees every core).

    python benchmarks/batch_throughput.py --mode ais --images 12 --cores-per-worker 1,0

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
    parser.add_argument("--size", choices=("tiny", "small", "demo"), default="tiny")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--mode", choices=("amg", "ais"), default="amg")
    parser.add_argument(
        "--cores-per-worker",
        default="0",
        help="comma-separated cores per worker process to measure (0: unpinned)",
    )
    args = parser.parse_args()
    if args.mode == "ais":
        return main_ais(args)

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
        from napari_sam_keras.segmentation.batch import modes

        load_model(checkpoint)
        modes.forget_models()

        t0 = time.perf_counter()
        local = segment_batch(images, tmp / "in-process", **options)
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        dist = segment_batch(images, tmp / "workers", workers=args.workers, **options)
        t_dist = time.perf_counter() - t0
        assert local.ok and dist.ok
        check_same(local, tmp / "workers", read_label_output)

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


def check_same(local, other: Path, read) -> None:
    for row in local.rows:
        name = Path(row["output"]).name
        a, b = read(Path(row["output"])), read(other / name)
        if np.array_equal(a, b):
            continue
        # where thread counts differ, float sums differ in their last bits; say how far
        pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
        same_partition = len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))
        moved = np.count_nonzero(a != b) if not same_partition else 0
        print(f"DIFF {name}: foreground equal {np.array_equal(a > 0, b > 0)}, "
              f"{'the same instances numbered otherwise' if same_partition else f'{moved} pixels differ'}"
              f" ({len(np.unique(a)) - 1} vs {len(np.unique(b)) - 1} instances)")  # fmt: skip


def ais_model(size: str, folder: Path) -> Path:
    """A random SAM of ``size`` (``demo``: the shipped demo model) with a new random
    instance decoder, saved as a model folder every worker loads."""
    from helpers import save_official_checkpoint

    from napari_sam_keras import load_model, save_model
    from napari_sam_keras.model.decoder_conversion import (
        DecoderConfig,
        InstanceDecoder,
        build_instance_decoder,
    )

    if size == "demo":
        net = load_model("demo_nuclei")
    else:
        save_official_checkpoint(model_config(size), folder.with_suffix(".pth"))
        net = load_model(folder.with_suffix(".pth"))
    c = net.config.prompt_embed_dim
    config = DecoderConfig(embed_dim=c, features=(2 * c, c, c // 2, c // 4))
    net.instance_decoder = InstanceDecoder(build_instance_decoder(config), config, key="bench")
    return save_model(net, folder)


def _pin(plan: dict, dask_worker=None) -> list[int]:
    """Pin every thread of this worker process to its cores (before the math library
    starts its thread pool, on the first task)."""
    cores = plan[dask_worker.address]
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), cores)
    return sorted(os.sched_getaffinity(0))


def run_on_cluster(images, out: Path, workers: int, cores: int, options: dict):
    """(wall seconds including the cluster's start, summary, cores of each worker)."""
    import logging

    from distributed import Client, LocalCluster

    from napari_sam_keras import segment_batch

    available = sorted(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:  # fmt: skip
        pinned = {}
        if cores:
            addresses = sorted(client.scheduler_info()["workers"])
            plan = {
                a: [available[(i * cores + k) % len(available)] for k in range(cores)]
                for i, a in enumerate(addresses)
            }
            pinned = client.run(_pin, plan)
        summary = segment_batch(images, out, scheduler=cluster.scheduler_address, **options)
    return time.perf_counter() - t0, summary, pinned


def main_ais(args) -> None:
    from napari_sam_keras import segment_batch
    from napari_sam_keras.files.batch_files import read_label_output
    from napari_sam_keras.segmentation.batch import modes

    lines = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["NAPARI_SAM_KERAS_CACHE_DIR"] = str(tmp / "cache")
        images = write_images(tmp / "images", args.images, args.image_size)
        model = ais_model(args.size, tmp / "ais-model")
        options = dict(model=str(model), mode="ais")
        modes.forget_models()
        t0 = time.perf_counter()
        local = segment_batch(images, tmp / "in-process", **options)
        t_local = time.perf_counter() - t0
        assert local.ok, local.rows
        busy_local = sum(float(r["seconds"]) for r in local.rows)
        n = args.images
        load = os.getloadavg()[0]
        busy = "shared with other jobs" if load > 1.5 * (os.cpu_count() or 1) else "quiet"
        say(f"machine: {cpu_name()}, {os.cpu_count()} CPUs (load average at start "
            f"{load:.1f}: {busy})")  # fmt: skip
        say(f"AIS, model {args.size} + random instance decoder, {n} images of "
            f"{args.image_size}^2")  # fmt: skip
        say(f"{'run':34s} {'wall s':>7s} {'images/h':>9s} {'ratio':>6s} {'busy images/h':>14s}")
        say(f"{'in-process (all cores)':34s} {t_local:7.1f} {3600 * n / t_local:9.0f} "
            f"{1.0:6.2f} {3600 * n / busy_local:14.0f}")  # fmt: skip
        for cores in [int(c) for c in args.cores_per_worker.split(",")]:
            wall, dist, pinned = run_on_cluster(
                images, tmp / f"workers-{cores}", args.workers, cores, options
            )
            assert dist.ok, dist.rows
            check_same(local, tmp / f"workers-{cores}", read_label_output)
            per_worker: dict[str, float] = {}
            for row in dist.rows:
                per_worker[row["worker"]] = per_worker.get(row["worker"], 0) + float(row["seconds"])
            busy = max(per_worker.values())
            what = f"{cores} core(s) each" if cores else "unpinned"
            say(f"{f'--workers {args.workers}, {what}':34s} {wall:7.1f} {3600 * n / wall:9.0f} "
                f"{t_local / wall:6.2f} {3600 * n / busy:14.0f}")  # fmt: skip
            if pinned:
                say(f"    cores per worker: {sorted(pinned.values())}")
    say(
        "wall: from the call to the last output (a cluster's start and each worker's model "
        "load included); busy: images / the busiest process's seconds spent on its images "
        "(model load in its first image), i.e. the steady rate once workers are up"
    )


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
