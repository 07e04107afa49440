"""Start-up cost: a fresh process from nothing to its first mask, ours against the official package.

Each measurement is a new Python process that imports the package, loads a
model, embeds a 512 x 512 image and decodes one point; the parent times the
whole process (interpreter start included) and the child reports its stages.

* ours: the shipped ``demo_nuclei`` model, and a random ViT-B saved by this
  script as an official checkpoint (``sam_vit_b``-shaped ``.pth``), on each
  Keras backend asked for; first with an empty jax compilation cache (cold),
  then again with the cache the first run filled (warm).  The ``.pth`` is
  converted once beforehand (a one-time cost, reported on its own line).
* official: ``segment_anything`` (PyTorch) on the same checkpoint.
* a per-stage profile: ``python -X importtime`` of ``import napari_sam_keras`` +
  ``load_model`` (the heaviest top-level imports), and build / weight load /
  first embedding (compile + run) / second embedding (run) / first prompt.

Usage::

    python benchmarks/startup.py                       # jax, tensorflow, torch
    python benchmarks/startup.py --backends jax --no-vit-b

Timings on a shared machine move with its load: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The package measured (another checkout, e.g. an older version, with --package-root).
PACKAGE_ROOT = REPO

CHILD_OURS = r"""
import json, sys, time
t0 = time.perf_counter()
stages = {}
import numpy as np
import napari_sam_keras as nsk
from napari_sam_keras.runtime.backend import import_keras
import_keras()
stages["import"] = time.perf_counter() - t0
t = time.perf_counter()
from napari_sam_keras.model import network as _network
_name = "_build_sam_model" if hasattr(_network, "_build_sam_model") else "_build_keras_cv_sam"
_build = getattr(_network, _name)  # (the second: the code before 2026-12)
_built = {}
def _timed_build(*a, **k):
    s = time.perf_counter(); m = _build(*a, **k); _built["build"] = time.perf_counter() - s
    return m
setattr(_network, _name, _timed_build)
net = nsk.load_model(sys.argv[1])
stages["load"] = time.perf_counter() - t
stages["load: build"] = _built.get("build", 0.0)
stages["load: weights"] = stages["load"] - stages["load: build"]
image = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
predictor = nsk.SAMPredictor(net)
t = time.perf_counter()
predictor.set_image(image)
stages["first embedding (compile + run)"] = time.perf_counter() - t
t = time.perf_counter()
masks, scores, _ = predictor.predict(point_coords=np.array([[256, 256]]), point_labels=np.array([1]))
stages["first prompt (compile + run)"] = time.perf_counter() - t
stages["to first mask"] = time.perf_counter() - t0
if "--stages" in sys.argv:
    t = time.perf_counter()
    predictor.set_image(image[::-1].copy())
    stages["second embedding (run)"] = time.perf_counter() - t
    t = time.perf_counter()
    predictor.predict(point_coords=np.array([[100, 300]]), point_labels=np.array([1]))
    stages["second prompt (run)"] = time.perf_counter() - t
stages["tensorflow imported"] = "tensorflow" in sys.modules
stages["keras_cv imported"] = "keras_cv" in sys.modules
try:
    from napari_sam_keras.runtime.compilation_cache import compilation_cache_folder
    folder = compilation_cache_folder()
    stages["jax cache entries"] = len(list(folder.iterdir())) if folder else None
except Exception:
    pass
print("STAGES " + json.dumps(stages))
"""

CHILD_OFFICIAL = r"""
import json, sys, time
t0 = time.perf_counter()
stages = {}
sys.path.insert(0, sys.argv[2])
from official_sam import install_torchvision_shim
install_torchvision_shim()
import numpy as np
import torch
from segment_anything import SamPredictor, sam_model_registry
stages["import"] = time.perf_counter() - t0
t = time.perf_counter()
sam = sam_model_registry["vit_b"](checkpoint=sys.argv[1]).eval()
stages["load"] = time.perf_counter() - t
image = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
predictor = SamPredictor(sam)
t = time.perf_counter()
with torch.no_grad():
    predictor.set_image(image)
    stages["first embedding (compile + run)"] = time.perf_counter() - t
    t = time.perf_counter()
    predictor.predict(point_coords=np.array([[256, 256]]), point_labels=np.array([1]))
stages["first prompt (compile + run)"] = time.perf_counter() - t
stages["to first mask"] = time.perf_counter() - t0
print("STAGES " + json.dumps(stages))
"""


def run_child(code: str, args: list[str], env: dict, importtime: bool = False) -> dict:
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code, *args]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=PACKAGE_ROOT)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("STAGES ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    stages = json.loads(lines[-1][len("STAGES ") :])
    stages["process wall (incl. interpreter)"] = wall
    if importtime:
        stages["importtime"] = top_imports(done.stderr)
    return stages


def top_imports(stderr: str, count: int = 8) -> list[tuple[str, float]]:
    """The heaviest top-level packages in ``-X importtime`` output (cumulative seconds)."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if name.startswith("  ") or not cumulative.strip().isdigit():
            continue  # only the roots of the import tree
        root = name.strip().split(".")[0]
        totals[root] = totals.get(root, 0.0) + int(cumulative) / 1e6
    return sorted(totals.items(), key=lambda kv: -kv[1])[:count]


def save_vit_b_checkpoint(path: Path) -> None:
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from official_sam import install_torchvision_shim

    install_torchvision_shim()
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    torch.save(sam_model_registry["vit_b"]().state_dict(), path)


def first_mask_wall(stages: dict) -> float:
    """The process's wall time up to its first mask: without the second embedding and
    prompt that the cold runs time afterwards for the stage profile."""
    extra = stages.get("second embedding (run)", 0.0) + stages.get("second prompt (run)", 0.0)
    return stages["process wall (incl. interpreter)"] - extra


def fmt(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--no-vit-b", action="store_true", help="only the demo model")
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--package-root", type=Path, help="measure the package in this checkout")
    args = parser.parse_args()
    global PACKAGE_ROOT
    if args.package_root:
        PACKAGE_ROOT = args.package_root.resolve()
    backends = [b for b in args.backends.split(",") if b]
    print(f"# start-up benchmark, {time.strftime('%Y-%m-%d %H:%M')} UTC")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; package: {PACKAGE_ROOT}"
    )
    print("# timings move with the machine's load: compare the ratios of one run")
    with tempfile.TemporaryDirectory(prefix="sam-startup-") as tmp:
        tmp = Path(tmp)
        env = dict(
            os.environ, PYTHONPATH=str(PACKAGE_ROOT), NAPARI_SAM_KERAS_CACHE_DIR=str(tmp / "cache")
        )
        env.pop("NAPARI_SAM_KERAS_COMPILATION_CACHE", None)
        models = {"demo_nuclei": "demo_nuclei"}
        checkpoint = tmp / "sam_vit_b_random.pth"
        if not args.no_vit_b:
            save_vit_b_checkpoint(checkpoint)
            models["vit_b (.pth)"] = str(checkpoint)
        rows = []
        official = None
        if not args.no_vit_b and not args.no_official:
            official = run_child(CHILD_OFFICIAL, [str(checkpoint), str(REPO / "tests")], env)
            rows.append(("official segment_anything", "vit_b (.pth)", "-", official))
        for backend in backends:
            benv = dict(env, KERAS_BACKEND=backend, NAPARI_SAM_KERAS_BACKEND=backend)
            for label, source in models.items():
                if source.endswith(".pth"):  # the one-time conversion, into the shared cache
                    start = time.perf_counter()
                    run_child(
                        CHILD_OURS, [source], dict(benv, NAPARI_SAM_KERAS_COMPILATION_CACHE="0")
                    )
                    print(
                        f"# {backend}: first run with conversion of the .pth: "
                        f"{time.perf_counter() - start:.1f} s"
                    )
                cold_env = dict(
                    benv, NAPARI_SAM_KERAS_COMPILATION_CACHE=str(tmp / f"xla-{backend}-{len(rows)}")
                )
                cold = run_child(CHILD_OURS, [source, "--stages"], cold_env)
                rows.append((f"ours, {backend}", label, "cold", cold))
                warm = run_child(CHILD_OURS, [source], cold_env)
                rows.append((f"ours, {backend}", label, "warm", warm))
        print()
        print("## Cold start to the first mask (fresh process; 512 x 512 image, one point)")
        print()
        print(
            "| who | model | compile cache | process wall to first mask s | import | load | "
            "first embedding | "
            "first prompt | ratio to official |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for who, label, cache, st in rows:
            ratio = ""
            if official and label == "vit_b (.pth)" and who != "official segment_anything":
                ratio = f"{first_mask_wall(st) / first_mask_wall(official):.2f}x"
            print(
                f"| {who} | {label} | {cache} | {fmt(first_mask_wall(st))} | "
                f"{fmt(st['import'])} | {fmt(st['load'])} | "
                f"{fmt(st['first embedding (compile + run)'])} | "
                f"{fmt(st['first prompt (compile + run)'])} | {ratio} |"
            )
        print()
        print("## Stages of the cold runs (seconds)")
        for who, label, cache, st in rows:
            if cache != "cold":
                continue
            print(
                f"- {who}, {label}: "
                + ", ".join(f"{k} {fmt(v)}" for k, v in st.items() if k != "importtime")
            )
        print()
        print(
            "## python -X importtime: import napari_sam_keras + Keras + load_model('demo_nuclei')"
        )
        for backend in backends:
            benv = dict(
                env,
                KERAS_BACKEND=backend,
                NAPARI_SAM_KERAS_BACKEND=backend,
                NAPARI_SAM_KERAS_COMPILATION_CACHE="0",
            )
            st = run_child(CHILD_OURS, ["demo_nuclei"], benv, importtime=True)
            tops = ", ".join(f"{name} {sec:.2f}" for name, sec in st["importtime"])
            print(f"- {backend}: {tops}")


if __name__ == "__main__":
    main()
