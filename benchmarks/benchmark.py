"""Speed of napari-sam-keras against the official PyTorch SAM, in one run, on one machine.

Both sides load the same random official-format checkpoint (ours through
``load_model``, i.e. our converter).  Each side runs in its own process
(Keras fixes its backend at import; torch gets the same threads).  The table
reports medians and the ratio ours / official: timings on a shared machine
are noisy, ratios from one run are what to compare.

    python benchmarks/benchmark.py --quick                  # a few minutes on 2 CPU cores
    python benchmarks/benchmark.py --model vit_h --backends jax,tensorflow --dtype mixed_bfloat16
    python benchmarks/benchmark.py --model vit_t --compare vit_b --quick   # MobileSAM's encoder
    python benchmarks/benchmark.py --concept --concept-size real --backends jax,tensorflow

For ``vit_t`` the official side is MobileSAM's PyTorch code (``mobilesam-mirror``).
``--concept`` times SAM 3 concept segmentation instead: ``benchmarks/concept.py`` (ours
against transformers' PyTorch, same random weights) once per backend, each in its own
process, and a table of the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the official package's torchvision stand-in

POINT = np.array([[400.0, 300.0]])
BOX = np.array([250.0, 180.0, 640.0, 520.0])


def test_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blobs on a noisy background: cell-like structure for the generator to find."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = rng.normal(40, 8, (h, w))
    for _ in range(40):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 40)
        img += 160 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return np.clip(np.stack([img] * 3, -1), 0, 255).astype(np.uint8)


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, the repeats interleaved (a, b, a, b, ...) so that a
    busy machine slows every side alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) for name, v in times.items()}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- one side per process ----------------------------------------------------------------

PROMPTS = {
    "point": dict(point_coords=POINT, point_labels=np.array([1])),
    "box": dict(box=BOX),
    "points_box": dict(
        point_coords=np.array([[400.0, 300.0], [600, 500]]), point_labels=np.array([1, 0]), box=BOX
    ),
}


def time_predictor(predictor, args, results: dict, trace_count=None) -> None:
    """Embedding and prompt timings; both predictors share the official interface."""
    image = test_image(768, 1024)
    t = time.perf_counter()
    predictor.set_image(image)
    results["first_embedding"] = time.perf_counter() - t
    t = time.perf_counter()
    predictor.predict(**PROMPTS["point"])
    results["first_prompt"] = time.perf_counter() - t
    results["embedding"], _ = timed(lambda: predictor.set_image(image), args.embed_repeats)
    traces = trace_count() if trace_count else None
    for name, prompt in PROMPTS.items():
        results[name], _ = timed(lambda p=prompt: predictor.predict(**p), args.prompt_repeats)
    results["retraces"] = trace_count() - traces if trace_count else None


def time_generator(make_generator, args, results: dict) -> None:
    small = test_image(512, 512, seed=1)
    for side in args.amg_grids:
        generator = make_generator(side)
        t = time.perf_counter()
        results[f"amg_{side}_count"] = len(generator.generate(small))
        results[f"amg_{side}"] = time.perf_counter() - t


def official_package(model: str):
    """The official PyTorch package of ``model``: MobileSAM for vit_t, else segment-anything."""
    if model == "vit_t":
        from mobile_sam_oracle import import_mobile_sam

        return import_mobile_sam()
    from official_sam import install_torchvision_shim

    install_torchvision_shim()
    import segment_anything

    return segment_anything


def run_official(args) -> dict:
    import torch

    official = official_package(args.model)
    sam = official.sam_model_registry[args.model]()
    sam.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    sam.eval()  # after loading: MobileSAM caches its attention biases in eval()
    results = {}
    with torch.inference_mode():
        time_predictor(official.SamPredictor(sam), args, results)
        time_generator(
            lambda side: official.SamAutomaticMaskGenerator(sam, points_per_side=side, **AMG_KW),
            args,
            results,
        )
    results["peak_rss_mib"] = peak_rss_mib()
    return results


def run_ours(args) -> dict:
    from napari_sam_keras import SAMAutomaticMaskGenerator, SAMPredictor, load_model

    t = time.perf_counter()
    network = load_model(
        args.checkpoint, dtype_policy=None if args.dtype == "float32" else args.dtype
    )
    results = {"load": time.perf_counter() - t}
    predictor = SAMPredictor(network)
    backend = network.backend
    count = None if backend == "torch" else (lambda: predictor.prompt_path.trace_count)
    time_predictor(predictor, args, results, trace_count=count)
    time_generator(
        lambda side: SAMAutomaticMaskGenerator(predictor, points_per_side=side, **AMG_KW),
        args,
        results,
    )
    results["peak_rss_mib"] = peak_rss_mib()
    return results


# Random weights rarely pass the official quality filters; lower them so that the
# generator does its full work (filtering, NMS, RLE) on masks that survive.
AMG_KW = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)


# --- the driver --------------------------------------------------------------------------


def make_checkpoint(model: str, path: Path) -> None:
    import torch

    torch.manual_seed(0)
    sam = official_package(model).sam_model_registry[model]()
    with torch.no_grad():  # the official init leaves some tables at zero
        for name, p in sam.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or "attention_biases" in name:
                p.normal_(0, 0.02)
    torch.save(sam.state_dict(), path)


def run_side(side: str, args, checkpoint: Path) -> dict:
    env = dict(os.environ)
    if side != "official":
        env["KERAS_BACKEND"] = env["NAPARI_SAM_KERAS_BACKEND"] = side
    cmd = [
        sys.executable, __file__, "--_side", side, "--_checkpoint", str(checkpoint),
        "--model", args.model, "--dtype", args.dtype,
        "--embed-repeats", str(args.embed_repeats), "--prompt-repeats", str(args.prompt_repeats),
        "--amg-grids", ",".join(map(str, args.amg_grids)),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(proc.stderr[-3000:])
    return {"error": f"exit {proc.returncode}"}


ROWS = [
    ("embedding", "image embedding, 1024x768 (s)"),
    ("point", "one point -> masks (s)"),
    ("box", "box -> masks (s)"),
    ("points_box", "2 points + box -> masks (s)"),
    ("first_embedding", "first embedding, incl. compilation (s)"),
    ("first_prompt", "first prompt after set_image (s)"),
]


def table(results: dict[str, dict], args) -> str:
    sides = list(results)
    rows = list(ROWS)
    for side in args.amg_grids:
        rows.append((f"amg_{side}", f"automatic generator 512x512, {side}x{side} grid (s)"))
    head = "| what | official PyTorch | " + " | ".join(
        f"{s} | ratio" for s in sides if s != "official"
    )
    lines = [head + " |", "|" + "---|" * (2 + 2 * (len(sides) - 1))]
    base = results.get("official", {})
    for key, label in rows:
        cells = [label, _fmt(base.get(key))]
        for s in sides:
            if s == "official":
                continue
            value = results[s].get(key)
            ratio = value / base[key] if value and base.get(key) else None
            cells += [_fmt(value), f"{ratio:.2f}" if ratio else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    extra = [("retraces", "retraces across prompt kinds"), ("peak_rss_mib", "peak RSS (MiB)")]
    for key, label in extra:
        cells = [label, _fmt(base.get(key))]
        for s in sides:
            if s != "official":
                cells += [_fmt(results[s].get(key)), ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.0f}"
    return str(v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument(
        "--dtype", default="float32", help="Keras dtype policy, e.g. mixed_bfloat16"
    )
    parser.add_argument("--quick", action="store_true", help="few repeats, 16x16 grid only")
    parser.add_argument("--embed-repeats", type=int, default=3)
    parser.add_argument("--prompt-repeats", type=int, default=20)
    parser.add_argument("--amg-grids", default="32,16")
    parser.add_argument(
        "--compare",
        choices=["vit_b", "vit_l", "vit_h"],
        help="also time our embedding with this model on each backend (e.g. vit_t against vit_b)",
    )
    parser.add_argument(
        "--concept", action="store_true", help="SAM 3 against transformers (benchmarks/concept.py)"
    )
    parser.add_argument("--concept-size", choices=["tiny", "small", "real"], default="small")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--_side", help=argparse.SUPPRESS)
    parser.add_argument("--_checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.amg_grids = [int(v) for v in str(args.amg_grids).split(",") if v]
    if args._side:
        args.checkpoint = args._checkpoint
        fn = run_official if args._side == "official" else run_ours
        print("RESULT " + json.dumps(fn(args)))
        return
    if args.concept:
        concept_table(args)
        return
    if args.quick:
        args.embed_repeats, args.prompt_repeats, args.amg_grids = 1, 5, [16]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / f"sam_{args.model}_random.pth"
        make_checkpoint(args.model, checkpoint)
        results = {"official": run_side("official", args, checkpoint)}
        for backend in args.backends.split(","):
            results[backend] = run_side(backend, args, checkpoint)
        compared = compare_embeddings(args, Path(tmp)) if args.compare else {}
    print(
        f"\n{args.model}, dtype {args.dtype}, {time.strftime('%Y-%m-%d')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print(table(results, args))
    for backend, other in compared.items():
        mine, theirs = results[backend].get("embedding"), other.get("embedding")
        ratio = f"{mine / theirs:.2f}" if mine and theirs else "-"
        print(
            f"\n{backend}: ours {args.model} embedding {_fmt(mine)} s, ours {args.compare} "
            f"{_fmt(theirs)} s, ratio {ratio}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({**results, "compare": compared}, indent=2))


def compare_embeddings(args, tmp: Path) -> dict[str, dict]:
    """Our timings of ``args.compare`` on each backend (embedding and prompts, no generator)."""
    other = argparse.Namespace(**{**vars(args), "model": args.compare, "amg_grids": []})
    checkpoint = tmp / f"sam_{args.compare}_random.pth"
    make_checkpoint(args.compare, checkpoint)
    return {backend: run_side(backend, other, checkpoint) for backend in args.backends.split(",")}


def concept_table(args) -> None:
    """``benchmarks/concept.py`` on each backend in its own process; one table of ratios."""
    repeats = 2 if args.quick else args.embed_repeats
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            out = Path(tmp) / f"{backend}.json"
            env = {**os.environ, "KERAS_BACKEND": backend, "NAPARI_SAM_KERAS_BACKEND": backend}
            cmd = [sys.executable, str(Path(__file__).with_name("concept.py")),
                   "--size", args.concept_size, "--repeats", str(repeats), "--out", str(out)]  # fmt: skip
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.exists():
                results[backend] = json.loads(out.read_text())
            else:
                sys.stderr.write(proc.stderr[-3000:])
                results[backend] = {"error": f"exit {proc.returncode}"}
    print(
        f"\nSAM 3 concept segmentation, size {args.concept_size}, {time.strftime('%Y-%m-%d')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print("| backend | ours (s) | transformers (s) | ratio | vision ratio | max logit diff |")
    print("|---|---|---|---|---|---|")
    for backend, r in results.items():
        cells = [r.get(k) for k in ("ours_median_s", "transformers_median_s")]
        cells += [r.get(k) for k in ("ratio_ours_over_transformers", "ratio_vision")]
        cells.append(r.get("max_logit_difference", r.get("error")))
        print(f"| {backend} | " + " | ".join(_fmt(c) for c in cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
