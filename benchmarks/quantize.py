"""int8 (or bfloat16) image encoders against float32: time ratio, mask agreement, drift.

Per backend (each in a process of its own) and per model, the same weights are run as
float32 and with the image encoder quantized to int8 (``quantize_encoder``, Keras'
``Model.quantize("int8")`` on its Dense layers):

* time: after one warm-up call each (compilation), ``--repeats`` embeddings of the sample
  image, float32 and int8 interleaved (f, q, f, q, ...) so that the load of a busy machine
  hits both alike; reported as ratios int8 / float32 only (the median of the per-pair
  ratios, and the ratio of the medians), never as bare times;
* agreement: mean (and lowest) IoU of the best mask of a ``--per-side`` x ``--per-side``
  grid of single positive points, int8 against float32 (the same prompt path decodes
  both embeddings: ``model/encoder_agreement.py``);
* drift: ``||e_int8 - e_float32|| / ||e_float32||`` of the embeddings.

``--variant bfloat16`` measures the same for the whole network built under Keras'
``mixed_bfloat16`` policy (``load_model(..., dtype_policy="mixed_bfloat16")``: float32
weights, bfloat16 compute), for CPUs with bfloat16 units (AVX512_BF16, AMX).

The torch backend is measured with the demo model only (``--torch-models``): on a CPU Keras
multiplies int8 by int8 there as int32, which PyTorch computes far slower than float32, so
``load_model(..., quantize="int8")`` refuses torch on a CPU (the benchmark bypasses that
check to measure it).

Models: the shipped ``demo_nuclei`` (256 px) and a ViT-B with random weights
(``build_sam("vit_b", seed=0)``, 1024 px; no download is possible here).

    python benchmarks/quantize.py                                  # jax, tensorflow, torch
    python benchmarks/quantize.py --backends jax --repeats 5 --out results.txt
    python benchmarks/quantize.py --backends jax --variant bfloat16
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ("demo", "vit_b")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _networks(which: str, variant: str):
    from napari_sam_keras import build_sam, load_model
    from napari_sam_keras.model.network import dtype_policy_scope
    from napari_sam_keras.model.network_copy import copy_network
    from napari_sam_keras.model.quantization import quantize_encoder

    reference = load_model("demo_nuclei") if which == "demo" else build_sam("vit_b", seed=0)
    if variant == "int8":
        return reference, quantize_encoder(copy_network(reference), "int8", check=False)
    with dtype_policy_scope("mixed_bfloat16"):
        return reference, copy_network(reference)


def measure(which: str, repeats: int, per_side: int, variant: str = "int8") -> dict:
    """One model on this process's backend (see the module docstring)."""
    import numpy as np

    from napari_sam_keras.model.encoder_agreement import embedding_agreement
    from napari_sam_keras.model.quantization import check_image, encoder_kernel_dtypes

    reference, quantized = _networks(which, variant)
    dtypes = set(encoder_kernel_dtypes(quantized).values())
    image = check_image(reference.config.image_size)
    enc_f, enc_q = reference.image_encoder(), quantized.image_encoder()
    t0 = time.perf_counter()
    emb_f = enc_f.embed(image)
    first_f = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb_q = enc_q.embed(image)
    first_q = time.perf_counter() - t0
    times_f, times_q = [], []
    for _ in range(repeats):
        for enc, times in ((enc_f, times_f), (enc_q, times_q)):
            t0 = time.perf_counter()
            enc.embed(image)
            times.append(time.perf_counter() - t0)
    agreement = embedding_agreement(reference, emb_f, emb_q, per_side)
    pairs = [q / f for f, q in zip(times_f, times_q, strict=True)]
    return {
        "model": "demo_nuclei" if which == "demo" else "random ViT-B",
        "variant": variant,
        "image_size": reference.config.image_size,
        "int8_kernels": sorted(dtypes),
        "ratio_pairs_median": statistics.median(pairs),
        "ratio_pairs_min": min(pairs),
        "ratio_pairs_max": max(pairs),
        "ratio_of_medians": statistics.median(times_q) / statistics.median(times_f),
        "first_call_ratio": first_q / first_f,
        "repeats": repeats,
        "mean_iou": agreement.mean_iou,
        "min_iou": agreement.min_iou,
        "prompts": agreement.prompts,
        "drift": agreement.drift,
        "embedding_finite": bool(np.isfinite(emb_q.features).all()),
    }


def child(backend: str, models: list[str], repeats: int, per_side: int, variant: str) -> None:
    os.environ["KERAS_BACKEND"] = backend
    sys.path.insert(0, str(ROOT))
    rows = []
    for which in models:
        try:
            rows.append({"backend": backend, **measure(which, repeats, per_side, variant)})
        except Exception as err:  # one backend's failure is a result row, not the end
            rows.append(
                {"backend": backend, "model": which, "error": f"{type(err).__name__}: {err}"}
            )
        print("RESULT " + json.dumps(rows[-1]), flush=True)


def _row_text(row: dict) -> str:
    if "error" in row:
        return f"| {row['backend']} | {row['model']} | failed: {row['error'][:120]} |||||"
    return (
        f"| {row['backend']} | {row['model']} ({row['image_size']} px) "
        f"| {row['ratio_pairs_median']:.2f} ({row['ratio_pairs_min']:.2f}-"
        f"{row['ratio_pairs_max']:.2f}; medians {row['ratio_of_medians']:.2f}) "
        f"| {row['first_call_ratio']:.2f} | {row['mean_iou']:.4f} (min {row['min_iou']:.3f}) "
        f"| {row['drift']:.4f} | {'yes' if row['mean_iou'] >= 0.98 else 'no'} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--torch-models",
        default="demo",
        help="models measured on torch (default demo only: Keras runs int8 products as int32 "
        "there on a CPU, a random ViT-B would take hours)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-side", type=int, default=8)
    parser.add_argument("--variant", choices=["int8", "bfloat16"], default="int8")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--note", default="", help="a line about the machine (load, sharing)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if args.child:
        child(args.child, models, args.repeats, args.per_side, args.variant)
        return 0
    rows = []
    for backend in [b for b in args.backends.split(",") if b]:
        models_here = args.torch_models if backend == "torch" else args.models
        cmd = [sys.executable, __file__, "--child", backend, "--models", models_here]
        cmd += ["--repeats", str(args.repeats), "--per-side", str(args.per_side)]
        cmd += ["--variant", args.variant]
        env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        found = [
            json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")
        ]
        if not found:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            found = [{"backend": backend, "model": args.models, "error": tail[0]}]
        rows += found
        print("\n".join(_row_text(r) for r in found), flush=True)
        _write(args, rows)  # after every backend: a run stopped later keeps what it measured
    print(_write(args, rows))
    return 0


def _write(args, rows: list[dict]) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    lines = [
        f"benchmarks/quantize.py, {datetime.date.today()}, {_cpu()}, {os.cpu_count()} CPUs, "
        f"load average at the end {load[0]:.1f}",
        f"repeats {args.repeats} (float32 and {args.variant} interleaved), {args.per_side}x"
        f"{args.per_side} point prompts; {args.note}".rstrip("; "),
        "",
        f"| backend | model | embedding time {args.variant} / float32: median of pairs (range; "
        f"ratio of medians) | first call (compile) {args.variant} / float32 | mask agreement: "
        "mean IoU of the best "
        "mask | embedding drift (rel. L2) | agreement >= 0.98 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(_row_text(r) for r in rows),
        "",
        "raw: " + json.dumps(rows),
    ]
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        sys.path.insert(0, str(ROOT))
        from napari_sam_keras.files.atomic_write import atomic_write

        with atomic_write(args.out) as tmp:
            Path(tmp).write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
