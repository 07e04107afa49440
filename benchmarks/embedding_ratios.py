"""The light encoder's embedding time as ratios measured in one process: ours vit_t against
MobileSAM's PyTorch and against our own ViT-B.

MobileSAM and our vit_t load the same random MobileSAM checkpoint (ours through
``load_model``); our ViT-B has random weights (only its time matters).  All three
embed the same 1024 x 768 image through their predictors' ``set_image``, the repeats
interleaved (ours vit_t, MobileSAM, ours ViT-B, ours vit_t, ...), so that a busy
machine slows them alike; the ratios of the medians are what to compare.  Our side
runs on the Keras backend of ``KERAS_BACKEND`` (jax by default).

    python benchmarks/embedding_ratios.py --repeats 3
    KERAS_BACKEND=tensorflow python benchmarks/embedding_ratios.py --no-vit-b
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("NAPARI_SAM_KERAS_BACKEND", os.environ["KERAS_BACKEND"])
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))


def run(repeats: int, vit_b: bool) -> dict:
    import keras
    import torch
    from benchmark import interleaved_medians, test_image
    from mobile_sam_oracle import import_mobile_sam, save_mobile_sam_checkpoint

    from napari_sam_keras import SAMPredictor, load_model
    from napari_sam_keras.model.network import build_sam

    torch.set_num_threads(os.cpu_count() or 1)
    mobile_sam = import_mobile_sam()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mobile_sam.pt"
        sam = save_mobile_sam_checkpoint(path, seed=0)
        ours_t = SAMPredictor(load_model(path))
    theirs = mobile_sam.SamPredictor(sam)
    sides = {"ours_vit_t": ours_t.set_image, "mobile_sam": theirs.set_image}
    if vit_b:
        sides["ours_vit_b"] = SAMPredictor(build_sam("vit_b", seed=0)).set_image
    image = test_image(768, 1024)
    first = {}
    with torch.inference_mode():
        for name, fn in sides.items():
            t = time.perf_counter()
            fn(image)
            first[name] = time.perf_counter() - t
        med = interleaved_medians(
            {name: (lambda fn=fn: fn(image)) for name, fn in sides.items()}, repeats
        )
    out = {
        "backend": keras.backend.backend(),
        "repeats": repeats,
        "median_s": med,
        "first_s": first,
        "vit_t_over_mobile_sam": med["ours_vit_t"] / med["mobile_sam"],
    }
    if vit_b:
        out["vit_t_over_vit_b"] = med["ours_vit_t"] / med["ours_vit_b"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-vit-b", action="store_true", help="leave our ViT-B out")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args()
    r = run(args.repeats, not args.no_vit_b)
    if args.json:
        print("RESULT " + json.dumps(r))
        return
    med, first = r["median_s"], r["first_s"]
    print(f"\nembedding 1024x768, {r['backend']}, {r['repeats']} interleaved repeats, medians\n")
    print("| encoder | embedding (s) | first, incl. compilation (s) |")
    print("|---|---|---|")
    for name in med:
        print(f"| {name} | {med[name]:.2f} | {first[name]:.2f} |")
    print(f"\nours vit_t / MobileSAM: {r['vit_t_over_mobile_sam']:.2f}")
    if "vit_t_over_vit_b" in r:
        print(f"ours vit_t / ours ViT-B: {r['vit_t_over_vit_b']:.2f}")


if __name__ == "__main__":
    main()
