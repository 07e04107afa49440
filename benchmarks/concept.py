"""SAM 3 concept segmentation: ours (keras-hub layers, our forward) against transformers' PyTorch.

Both sides run the same random weights: a transformers ``Sam3Model`` of the chosen size is
saved with ``save_pretrained`` and read back through ``load_concept_model`` (our
conversion).  One image, a text and one positive + one negative exemplar box; the
forward pass only (pre/post-processing excluded on both sides).  Medians and the ratio
ours / transformers, in one run on one machine (timings on a shared machine are noisy;
compare ratios).

    KERAS_BACKEND=jax python benchmarks/concept.py --size small
    KERAS_BACKEND=tensorflow python benchmarks/concept.py --size real --repeats 2

Sizes: ``tiny`` (the test oracle, 112 px), ``small`` (hidden 256, 4 ViT layers, 336 px),
``real`` (transformers' default ``Sam3Config``: the real SAM 3 detector, 1008 px,
ViT-L/14 with 32 layers, ~3.4 GB of float32 weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test oracle (and its roi_align stand-in)
sys.path.insert(0, str(REPO))


def config_for(size: str, vocab_size: int):
    from transformers import Sam3Config

    if size == "tiny":
        from sam3_oracle import tiny_sam3_config

        return tiny_sam3_config(vocab_size)
    if size == "real":
        return Sam3Config()
    # small: the real layout at a fraction of the width and depth
    from transformers import CLIPTextConfig
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    vit = Sam3ViTConfig(
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=336,
        window_size=12,
        global_attn_indexes=[1, 3],
    )
    vision = Sam3VisionConfig(
        backbone_config=vit.to_dict() | {"model_type": "sam3_vit_model"},
        backbone_feature_sizes=[[96, 96], [48, 48], [24, 24]],
    )
    text = CLIPTextConfig(
        vocab_size=max(vocab_size, 49408),
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=32,
        hidden_act="gelu",
    )
    return Sam3Config(
        vision_config=vision.to_dict(),
        text_config=text.to_dict() | {"model_type": "clip_text_model"},
    )


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "real"], default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    import torch
    from sam3_oracle import _install_roi_align, oracle_outputs, tiny_clip_tokenizer
    from transformers import Sam3Model

    from napari_sam_keras import load_concept_model
    from napari_sam_keras.runtime.backend import import_keras

    keras = import_keras()
    _install_roi_align()
    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    theirs = Sam3Model(config_for(args.size, len(tokenizer))).eval()
    params = sum(p.numel() for p in theirs.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        made = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = load_concept_model(tmp)
        converted = time.perf_counter() - t0
    size = ours.image_size
    pixels = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    boxes = np.array([[0.1, 0.1, 0.4, 0.3], [0.5, 0.2, 0.8, 0.5]], np.float32)
    labels = [1, 0]
    ids, mask = ours.tokenizer("nucleus")
    cxcywh = np.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2,
            (boxes[:, 1] + boxes[:, 3]) / 2,
            *(boxes[:, 2:] - boxes[:, :2]).T,
        ],
        -1,
    )
    inputs = {
        "pixel_values": pixels,
        "token_ids": ids,
        "padding_mask": mask,
        "boxes": np.concatenate([np.zeros((2, 1)), cxcywh], -1)[None].astype(np.float32),
        "box_labels": np.array([labels], np.int32),
    }

    def run_theirs():
        return oracle_outputs(theirs, tokenizer, pixels, "nucleus", boxes, labels)

    t0 = time.perf_counter()
    ours.run(inputs)
    first = time.perf_counter() - t0
    ours_times = timed(lambda: ours.run(inputs), args.repeats)
    run_theirs()
    theirs_times = timed(run_theirs, args.repeats)
    got, want = ours.run(inputs), run_theirs()
    result = {
        "size": args.size,
        "image_size": size,
        "parameters": int(params),
        "backend": keras.backend.backend(),
        "torch_threads": torch.get_num_threads(),
        "make_and_save_s": round(made, 1),
        "convert_s": round(converted, 1),
        "ours_first_call_s": round(first, 2),
        "ours_median_s": round(float(np.median(ours_times)), 3),
        "transformers_median_s": round(float(np.median(theirs_times)), 3),
        "ratio_ours_over_transformers": round(
            float(np.median(ours_times) / np.median(theirs_times)), 2
        ),
        "max_logit_difference": float(np.abs(got["pred_logits"] - want["pred_logits"]).max()),
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
