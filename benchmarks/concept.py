"""SAM 3 concept segmentation: ours (keras-hub layers, our forward) against transformers' PyTorch.

Both sides run the same random weights: a transformers ``Sam3Model`` of the chosen size is
saved with ``save_pretrained``, read back through ``load_concept_model`` (our
conversion) and by transformers' ``from_pretrained`` (one model in memory at a time).
One image, a text and one positive + one negative exemplar box; the forward pass only
(pre/post-processing excluded on both sides), timed in its parts: the image's features
(the ViT and its FPN: most of the cost) and the rest (text encoder, geometry encoder,
DETR encoder and decoder, mask decoder; ours also splits the text off).  Medians and
the ratio ours / transformers, in one run on one machine, with the load average at the
start, between the two sides and at the end (timings on a shared machine are noisy;
compare ratios).

    KERAS_BACKEND=jax python benchmarks/concept.py --size small
    KERAS_BACKEND=tensorflow python benchmarks/concept.py --size real --repeats 2

On the torch backend keras-hub pools the exemplar boxes with torchvision's ``roi_align``,
which does not import here: the tests' plain-torch one (``tests/sam3_oracle.py``) stands in,
as it does for transformers (two boxes: no measurable cost at the real size).

Sizes: ``tiny`` (the test oracle, 112 px), ``small`` (hidden 256, 4 ViT layers, 336 px),
``real`` (transformers' default ``Sam3Config``: the real SAM 3 detector, 1008 px,
ViT-L/14 with 32 layers, ~3.4 GB of float32 weights).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
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


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _say(text: str) -> None:
    """A phase on stderr (the real size runs for many minutes)."""
    print(f"{time.strftime('%H:%M:%S')} {text} (load {_load()})", file=sys.stderr, flush=True)


def their_inputs(pixels, tokenizer, text, boxes, labels):
    """transformers' inputs, as ``tests/sam3_oracle.oracle_outputs`` makes them."""
    import torch

    tokens = tokenizer([text], padding="max_length", max_length=32, return_tensors="pt")
    b = np.asarray(boxes, np.float32)
    cxcywh = np.stack(
        [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, *(b[:, 2:] - b[:, :2]).T], -1
    )
    pixel_values = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    prompt = {
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
        "input_boxes": torch.from_numpy(cxcywh[None]),
        "input_boxes_labels": torch.as_tensor(np.asarray(labels, np.int64)[None]),
    }
    return pixel_values, prompt


def run_theirs(model, pixel_values, prompt):
    """transformers' forward in its two parts, timed: (logits, {part: seconds})."""
    import torch

    with torch.no_grad():
        t0 = time.perf_counter()
        vision = model.get_vision_features(pixel_values=pixel_values)
        t1 = time.perf_counter()
        out = model(vision_embeds=vision, **prompt)
        t2 = time.perf_counter()
    return out.pred_logits.numpy(), {"vision": t1 - t0, "text_and_decoder": t2 - t1}


def run_ours(model, inputs):
    """Our forward in its three steps, timed: (logits, {step: seconds})."""
    t0 = time.perf_counter()
    image = model.encode_image(inputs["pixel_values"])  # waits for the result
    t1 = time.perf_counter()
    text = model.encode_text(inputs["token_ids"], inputs["padding_mask"])
    t2 = time.perf_counter()
    out = model.decode(image, text, inputs["padding_mask"], inputs["boxes"], inputs["box_labels"])
    t3 = time.perf_counter()
    return out["pred_logits"], {"vision": t1 - t0, "text": t2 - t1, "decoder": t3 - t2}


def medians(parts: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.median([p[k] for p in parts])), 3) for k in parts[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "real"], default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    import torch
    from sam3_oracle import _install_roi_align, install_keras_hub_roi_align, tiny_clip_tokenizer
    from transformers import Sam3Model

    from napari_sam_keras import load_concept_model
    from napari_sam_keras.runtime.backend import import_keras

    keras = import_keras()
    _install_roi_align()
    if keras.backend.backend() == "torch":  # keras-hub's boxes call torchvision there too
        install_keras_hub_roi_align()
    tokenizer = tiny_clip_tokenizer()
    result = {"size": args.size, "backend": keras.backend.backend(), "load_start": _load()}
    boxes = np.array([[0.1, 0.1, 0.4, 0.3], [0.5, 0.2, 0.8, 0.5]], np.float32)
    labels = [1, 0]
    with tempfile.TemporaryDirectory() as tmp:
        # One model in memory at a time (the real one is 3.4 GB): transformers' is made,
        # saved and dropped; ours is converted from that folder, timed and dropped; then
        # transformers' is read back from the same folder and timed.
        folder = Path(tmp) / "sam3"
        os.environ["NAPARI_SAM_KERAS_CACHE_DIR"] = str(Path(tmp) / "cache")
        torch.manual_seed(0)
        _say("making and saving transformers' model")
        t0 = time.perf_counter()
        theirs = Sam3Model(config_for(args.size, len(tokenizer))).eval()
        result["parameters"] = int(sum(p.numel() for p in theirs.parameters()))
        theirs.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        del theirs
        result["make_and_save_s"] = round(time.perf_counter() - t0, 1)

        _say("converting it for ours")
        t0 = time.perf_counter()
        ours = load_concept_model(folder)
        result["convert_s"] = round(time.perf_counter() - t0, 1)
        size = ours.image_size
        pixels = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
        ids, mask = ours.tokenizer("nucleus")
        _, prompt = their_inputs(pixels, tokenizer, "nucleus", boxes, labels)
        inputs = {
            "pixel_values": pixels,
            "token_ids": ids,
            "padding_mask": mask,
            "boxes": np.concatenate([np.zeros((2, 1)), prompt["input_boxes"][0].numpy()], -1)[
                None
            ].astype(np.float32),
            "box_labels": np.array([labels], np.int32),
        }
        _say("ours: first call (compiles)")
        t0 = time.perf_counter()
        run_ours(ours, inputs)
        result["ours_first_call_s"] = round(time.perf_counter() - t0, 2)
        _say("ours: timed calls")
        ours_parts = []
        for _ in range(args.repeats):
            got, parts = run_ours(ours, inputs)
            ours_parts.append(parts)
        del ours
        gc.collect()
        result["load_after_ours"] = _load()
        result["ours_median_s"] = round(float(np.median([sum(p.values()) for p in ours_parts])), 3)
        result["ours_parts_median_s"] = medians(ours_parts)
        if args.out:  # half a result is kept if transformers' side does not finish
            Path(args.out).write_text(json.dumps(result | {"incomplete": True}, indent=1))

        _say("transformers: loading")
        t0 = time.perf_counter()
        theirs = Sam3Model.from_pretrained(folder).eval()
        result["transformers_load_s"] = round(time.perf_counter() - t0, 1)
        pixel_values, prompt = their_inputs(pixels, tokenizer, "nucleus", boxes, labels)
        _say("transformers: warm-up and timed calls")
        run_theirs(theirs, pixel_values, prompt)  # warm-up
        theirs_parts = []
        for _ in range(args.repeats):
            want, parts = run_theirs(theirs, pixel_values, prompt)
            theirs_parts.append(parts)
    ours_total = float(np.median([sum(p.values()) for p in ours_parts]))
    theirs_total = float(np.median([sum(p.values()) for p in theirs_parts]))
    result.update(
        {
            "image_size": size,
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
            "ours_median_s": round(ours_total, 3),
            "ours_parts_median_s": medians(ours_parts),
            "transformers_median_s": round(theirs_total, 3),
            "transformers_parts_median_s": medians(theirs_parts),
            "ratio_ours_over_transformers": round(ours_total / theirs_total, 2),
            "ratio_vision": round(
                medians(ours_parts)["vision"] / medians(theirs_parts)["vision"], 2
            ),
            "max_logit_difference": float(np.abs(got - want).max()),
            "load_end": _load(),
            "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1),
            "date": time.strftime("%Y-%m-%d"),
            "cpus": os.cpu_count(),
        }
    )
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
