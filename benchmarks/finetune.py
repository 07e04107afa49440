"""Fine-tuning speed: one training step against PyTorch, and a "decoder"-mode run of ViT-B.

(a) One training step of SAM's prompt encoder + mask decoder (ViT-B sizes: 256 channels,
    64 x 64 embedding) on one image's prompt batch, as ``finetune`` makes it: 8 objects x 4
    rounds = 32 prompts (a first point, then 2 corrective points per round, the previous
    low-res logits as mask input), loss = Dice on the masks (best of 3 for the first point)
    + squared error of the IoU head, AdamW with global-norm clipping.  Ours: the core's
    ``PromptTrainingModel.train_on_batch`` on jax and on tensorflow (each in a process of
    its own); the baseline: the same batch, loss and optimizer on the official
    ``segment-anything`` PromptEncoder + MaskDecoder in PyTorch, in the same run.  Reported:
    the median step time of each after warm-up, and ours / PyTorch (goal <= 0.8).
(b) ``finetune(mode="decoder")`` of a ViT-B SAM with random weights (no real weights here)
    on 10 synthetic 512 x 512 images, wall time split into the image embeddings (the
    encoder's calls, timed) and the rest (training steps, validation).  Goal: under 10 min
    in all on a 2-core CPU.  Reported with the ratio to the (a) PyTorch step of the same run.

    python benchmarks/finetune.py                      # (a) and (b), jax for (b)
    python benchmarks/finetune.py --part step --steps 20
    python benchmarks/finetune.py --part run --epochs 2 --images 10
(c) Quality per test domain (``tests/finetune_domains.py``: dark_cells, rings, squares): the
    shipped ``demo_nuclei`` model before and after ``finetune(mode="decoder")``, held-out
    mean IoU of one click and of one box (``evaluate_prompts``) and the new instance
    decoder's mSA (``evaluate_instances``).  ``--quick`` trains on fewer images for fewer
    epochs (about 10 minutes for the three domains on a busy 2-core CPU).

    python benchmarks/finetune.py --part quality --quick
    python benchmarks/finetune.py --part quality --domains rings,squares --epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OBJECTS, ROUNDS = 8, 4  # finetune's defaults: objects_per_image=8, prompt_iterations=3
LR, WEIGHT_DECAY, CLIPNORM = 1e-4, 1e-4, 1.0


def prompt_batch(seed: int = 0, image_size: int = 1024, low_res: int = 256) -> dict:
    """The prompts of one step (numpy), shared by both sides: per object, round r has
    1 + 2 r points (labels 1, then 1/0 pairs); rounds after the first get a mask input."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(100, image_size - 100, (OBJECTS, 2))
    points, labels, masks, multimask = [], [], [], []
    for r in range(ROUNDS):
        for c in centres:
            n = 1 + 2 * r
            p = c + rng.normal(0, 20, (n, 2))
            lab = np.array([1] + [1, 0] * r, np.int32)
            points.append(p.astype(np.float32))
            labels.append(lab)
            masks.append(rng.normal(0, 3, (low_res, low_res)).astype(np.float32) if r else None)
            multimask.append(1.0 if r == 0 else 0.0)
    yy, xx = np.mgrid[:low_res, :low_res]
    target = np.stack(
        [((yy - c[1] / 4) ** 2 + (xx - c[0] / 4) ** 2 < 15**2) for c in centres] * ROUNDS
    ).astype(np.float32)
    return {
        "points": points,
        "labels": labels,
        "masks": masks,
        "multimask": np.array(multimask, np.float32),
        "target": target,
        "embedding": rng.normal(0, 1, (1, 64, 64, 256)).astype(np.float32),
    }


def median_step(step, steps: int, warmup: int) -> tuple[float, float]:
    """(median seconds per step after ``warmup`` steps, seconds of the first step)."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), first


# --- (a) ours: one step on a Keras backend (run in a subprocess per backend) ---------------


def keras_step(steps: int, warmup: int) -> dict:
    from napari_sam_keras import build_sam
    from napari_sam_keras.keras_layers.fine_tuning import PromptTrainingModel
    from napari_sam_keras.model.prompt_path import padded_prompts
    from napari_sam_keras.runtime.backend import import_keras

    keras = import_keras()
    network = build_sam("vit_b", seed=0)
    cfg = network.config
    b = prompt_batch()
    slots = 2 * ROUNDS
    x = padded_prompts(
        cfg,
        b["points"],
        b["labels"],
        [None] * len(b["points"]),
        b["masks"],
        slots,
        len(b["points"]),
    )
    x["embedding"] = b["embedding"]
    y = {"target": b["target"], "multimask": b["multimask"], "weight": np.ones(len(b["points"]))}
    model = PromptTrainingModel(network.model, cfg, None)
    model.compile(
        optimizer=keras.optimizers.AdamW(LR, weight_decay=WEIGHT_DECAY, global_clipnorm=CLIPNORM),
        jit_compile="auto",
    )
    model.optimizer.build(model.trainable_variables)
    losses = []
    median, first = median_step(
        lambda: losses.append(float(model.train_on_batch(x, y, return_dict=True)["loss"])),
        steps,
        warmup,
    )
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    return {"median": median, "first": first, "params": params, "loss": losses[-1]}


# --- (a) the baseline: official segment-anything in PyTorch -------------------------------


def torch_step(steps: int, warmup: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from official_sam import install_torchvision_shim

    install_torchvision_shim()
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    torch.manual_seed(0)
    prompt_encoder = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    params = list(prompt_encoder.parameters()) + list(mask_decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    b = prompt_batch()
    n, slots = len(b["points"]), 2 * ROUNDS
    pts = np.zeros((n, slots, 2), np.float32)
    lab = np.full((n, slots), -1, np.int64)  # -1: the official padding ("not a point")
    for i, (p, q) in enumerate(zip(b["points"], b["labels"], strict=True)):
        pts[i, : len(p)], lab[i, : len(q)] = p, q
    masks = np.stack([m if m is not None else np.zeros((256, 256), np.float32) for m in b["masks"]])
    points = (torch.from_numpy(pts), torch.from_numpy(lab))
    mask_in = torch.from_numpy(masks)[:, None]
    has_mask = torch.tensor([m is not None for m in b["masks"]])
    embedding = torch.from_numpy(b["embedding"]).permute(0, 3, 1, 2).contiguous()
    target = torch.from_numpy(b["target"])[:, None]
    multimask = torch.from_numpy(b["multimask"])

    def dice(pred, tgt):
        num = (pred * tgt).sum(dim=(2, 3))
        den = (pred * pred).sum(dim=(2, 3)) + (tgt * tgt).sum(dim=(2, 3))
        return 1 - 2 * num / den.clamp(min=1e-7)

    losses = []

    def step():
        optimizer.zero_grad()
        sparse, dense = prompt_encoder(points=points, boxes=None, masks=mask_in)
        # entries without a mask input get the no-mask embedding, as in ours
        no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(dense)
        dense = torch.where(has_mask[:, None, None, None], dense, no_mask)
        logits, iou_pred = mask_decoder.predict_masks(
            image_embeddings=embedding,
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )  # all 4 outputs: (B, 4, 256, 256), (B, 4)
        d = dice(torch.sigmoid(logits), target)
        mask_loss = multimask * d[:, 1:].min(dim=1).values + (1 - multimask) * d[:, 0]
        with torch.no_grad():
            hard = (logits > 0).float()
            true_iou = (hard * target).sum(dim=(2, 3)) / (
                torch.maximum(hard, target).sum(dim=(2, 3)) + 1e-7
            )
        sq = (iou_pred - true_iou) ** 2
        iou_loss = multimask * sq[:, 1:].mean(dim=1) + (1 - multimask) * sq[:, 0]
        loss = (mask_loss + iou_loss).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIPNORM)
        optimizer.step()
        losses.append(float(loss.detach()))

    median, first = median_step(step, steps, warmup)
    count = int(sum(p.numel() for p in params))
    return {
        "median": median,
        "first": first,
        "params": count,
        "loss": losses[-1],
        "threads": torch.get_num_threads(),
    }


# --- (b) a decoder-mode fine-tune of ViT-B -------------------------------------------------


def synthetic_pairs(count: int, size: int = 512, seed: int = 0):
    """``count`` images of bright ellipses on a noisy background, with instance labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(count):
        image = rng.normal(400, 40, (size, size))
        label = np.zeros((size, size), np.int32)
        for k in range(1, 16):
            cy, cx = rng.uniform(30, size - 30, 2)
            ry, rx = rng.uniform(10, 28, 2)
            blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            blob &= label == 0
            image[blob] += rng.uniform(1500, 3000)
            label[blob] = k
        images.append(image.astype(np.uint16))
        labels.append(label)
    return images, labels


def decoder_run(count: int, epochs: int, augment: bool = True) -> dict:
    from napari_sam_keras import build_sam, finetune
    from napari_sam_keras.model.image_encoder import ImageEncoder

    network = build_sam("vit_b", seed=0)
    images, labels = synthetic_pairs(count)
    spent = {"embedding": 0.0, "calls": 0}
    original = ImageEncoder.embed_resized

    def timed_embed(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent["embedding"] += time.perf_counter() - t0
            spent["calls"] += 1

    ImageEncoder.embed_resized = timed_embed
    steps = []
    t0 = time.perf_counter()
    try:
        result = finetune(
            network,
            images,
            labels,
            mode="decoder",
            epochs=epochs,
            augment=augment,
            progress=lambda done, total: steps.append((total, time.perf_counter())),
        )
    finally:
        ImageEncoder.embed_resized = original
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "embedding": spent["embedding"],
        "embeddings": spent["calls"],
        "rest": wall - spent["embedding"],
        "steps": steps[-1][0] if steps else 0,
        # a step without an embedding to compute (the median of all steps)
        "median_step": float(np.median(np.diff([t0] + [t for _, t in steps]))) if steps else 0.0,
        "per_embedding": spent["embedding"] / max(spent["calls"], 1),
        "history": result.history,
    }


# --- (c) quality per synthetic domain --------------------------------------------------------


def domain_quality(domain: str, train: int, test: int, epochs: int, learning_rate: float) -> dict:
    """The demo model on ``domain`` before and after a decoder-mode fine-tune."""
    sys.path.insert(0, str(ROOT / "tests"))
    from finetune_domains import domain_set

    from napari_sam_keras import (
        InstanceSegmenter,
        evaluate_instances,
        evaluate_prompts,
        finetune,
        load_model,
    )

    base = load_model("demo_nuclei")
    images, labels = domain_set(domain, train, seed=1)
    test_images, test_labels = domain_set(domain, test, seed=5)
    before = evaluate_prompts(base, test_images, test_labels, corrective_clicks=0)
    t0 = time.perf_counter()
    result = finetune(
        base, images, labels, epochs=epochs, validation=0.0, learning_rate=learning_rate, seed=0
    )
    seconds = time.perf_counter() - t0
    after = evaluate_prompts(result.model, test_images, test_labels, corrective_clicks=0)
    segmenter = InstanceSegmenter(result.model)
    scores = [
        evaluate_instances(segmenter.segment(image), truth)
        for image, truth in zip(test_images, test_labels, strict=True)
    ]
    return {
        "domain": domain,
        "before": {"point": before["point"], "box": before["box"]},
        "after": {"point": after["point"], "box": after["box"]},
        "msa": float(np.mean([s["msa"] for s in scores])),
        "sa50": float(np.mean([s["sa50"] for s in scores])),
        "objects": after["objects"],
        "train_seconds": seconds,
        "losses": [h["loss"] for h in result.history],
    }


def print_quality(args) -> None:
    print(
        f"\n(c) demo_nuclei before / after finetune(mode='decoder'), {args.train_images} "
        f"training images, {args.quality_epochs} epochs, learning rate {args.learning_rate}, "
        f"held-out mean IoU on {args.test_images} images per domain, Keras on {args.run_backend}\n"
    )
    print(
        "| domain | one point before | one point after | box before | box after "
        "| instance decoder mSA (SA50) | objects | fine-tune (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for domain in args.domains.split(","):
        q = in_subprocess(
            args.run_backend,
            "domain_quality",
            domain=domain,
            train=args.train_images,
            test=args.test_images,
            epochs=args.quality_epochs,
            learning_rate=args.learning_rate,
        )
        b, a = q["before"], q["after"]
        print(
            f"| `{domain}` | {b['point']:.2f} | {a['point']:.2f} | {b['box']:.2f} | "
            f"{a['box']:.2f} | {q['msa']:.2f} ({q['sa50']:.2f}) | {q['objects']} | "
            f"{q['train_seconds']:.0f} |",
            flush=True,
        )


# --- driver --------------------------------------------------------------------------------


def in_subprocess(backend: str, what: str, **kwargs) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, NAPARI_SAM_KERAS_BACKEND=backend)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import finetune as f; "
        f"print('RESULT' + json.dumps(f.{what}(**{kwargs!r}), default=float))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT") :])
    raise RuntimeError(f"{backend} {what} failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "step", "run", "quality"), default="all")
    parser.add_argument("--steps", type=int, default=10, help="timed steps in (a)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--backends", default="jax,tensorflow", help="Keras backends for (a)")
    parser.add_argument("--images", type=int, default=10, help="images in (b)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs in (b)")
    parser.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="(b) without the 4 variants per image (finetune(augment=False))",
    )
    parser.add_argument("--run-backend", default="jax", help="Keras backend for (b) and (c)")
    parser.add_argument("--domains", default="dark_cells,rings,squares", help="domains in (c)")
    parser.add_argument("--train-images", type=int, default=6, help="training images in (c)")
    parser.add_argument("--test-images", type=int, default=3, help="held-out images in (c)")
    parser.add_argument("--quality-epochs", type=int, default=4, help="epochs in (c)")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="in (c)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="(a) 2 steps after 1 warm-up on jax; (c) 4 training images, 3 epochs",
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.backends = 2, 1, "jax"
        args.train_images, args.quality_epochs = 4, 3

    print(
        f"napari-sam-keras fine-tuning benchmark, {time.strftime('%Y-%m-%d %H:%M')} UTC, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    if args.part == "quality":
        print_quality(args)
        return
    baseline = torch_step(args.steps, args.warmup)
    print(
        f"\n(a) one training step, ViT-B prompt encoder + mask decoder, {OBJECTS * ROUNDS} "
        f"prompts, median of {args.steps} after {args.warmup} warm-up steps\n"
    )
    print(
        "| implementation | median step (ms) | first step (s) | trainable parameters | ours / PyTorch |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| PyTorch, official segment-anything ({baseline['threads']} threads) | "
        f"{baseline['median'] * 1e3:.0f} | {baseline['first']:.1f} | {baseline['params']:,} | - |"
    )
    if args.part in ("all", "step"):
        for backend in args.backends.split(","):
            ours = in_subprocess(backend, "keras_step", steps=args.steps, warmup=args.warmup)
            print(
                f"| ours, Keras on {backend} | {ours['median'] * 1e3:.0f} | {ours['first']:.1f} | "
                f"{ours['params']:,} | {ours['median'] / baseline['median']:.2f} |"
            )
    if args.part in ("all", "run"):
        run = in_subprocess(
            args.run_backend,
            "decoder_run",
            count=args.images,
            epochs=args.epochs,
            augment=args.augment,
        )
        print(
            f"\n(b) finetune(mode='decoder', augment={args.augment}) of a random ViT-B on "
            f"{args.images} images of 512 x 512, {args.epochs} epochs, Keras on "
            f"{args.run_backend}\n"
        )
        print("| part | seconds | in PyTorch steps of (a) |")
        print("|---|---|---|")
        for name, key in (
            (f"image embeddings ({run['embeddings']} encoder calls)", "embedding"),
            (f"training ({run['steps']} steps) and validation", "rest"),
            ("total", "wall"),
        ):
            print(f"| {name} | {run[key]:.0f} | {run[key] / baseline['median']:.0f} |")
        print(f"\ngoal: total under 600 s -> {'met' if run['wall'] < 600 else 'NOT met'}")
        print(
            f"per embedding {run['per_embedding']:.1f} s, median step {run['median_step']:.1f} s "
            "(prompt step + instance-decoder step)"
        )


if __name__ == "__main__":
    main()
