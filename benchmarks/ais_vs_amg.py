"""Automatic instance segmentation: micro-sam's decoder ("AIS") against the mask generator.

Both run in one process, on one backend, on the same image and the same
embedding (computed once, not timed), with random weights: a random ViT SAM
and a random instance decoder of micro-sam's released shape.  Reported: the
median time of each after the embedding, and AIS / generator.  Random weights
rarely pass the generator's quality filters, so they are lowered to 0 (as in
``benchmark.py``): the generator then does its full work.

    python benchmarks/ais_vs_amg.py                       # vit_b, jax, 16x16 and 32x32 grids
    KERAS_BACKEND=tensorflow python benchmarks/ais_vs_amg.py --model vit_b --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import AMG_KW, test_image, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--grids", default="16,32", help="generator grids (points per side)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=1024, help="square test image side")
    args = parser.parse_args()

    from napari_sam_keras import (
        InstanceSegmenter,
        SAMAutomaticMaskGenerator,
        SAMPredictor,
        build_sam,
    )
    from napari_sam_keras.model.decoder_conversion import (
        DecoderConfig,
        InstanceDecoder,
        build_instance_decoder,
    )

    network = build_sam(args.model, seed=0)
    config = DecoderConfig(embed_dim=network.config.prompt_embed_dim)
    network.instance_decoder = InstanceDecoder(
        model=build_instance_decoder(config), config=config, key="random"
    )
    image = test_image(args.size, args.size, seed=1)
    predictor = SAMPredictor(network)
    predictor.set_image(image)
    embedding = predictor.embedding_state()

    segmenter = InstanceSegmenter(network, predictor=predictor)
    segmenter.segment(embedding)  # compiles
    ais, _ = timed(lambda: segmenter.segment(embedding), args.repeats)
    maps, _ = timed(lambda: segmenter.predict_maps(embedding), args.repeats)

    rows = [("instance decoder + watershed", ais, None), ("  of which the decoder", maps, None)]
    for side in [int(v) for v in args.grids.split(",") if v]:
        generator = SAMAutomaticMaskGenerator(predictor, points_per_side=side, **AMG_KW)
        generator.generate(image, embedding=embedding)  # compiles this batch size
        amg, _ = timed(lambda g=generator: g.generate(image, embedding=embedding), args.repeats)
        rows.append((f"automatic mask generator, {side}x{side} grid", amg, ais / amg))

    print(
        f"\n{args.model}, {network.backend}, {args.size}x{args.size} image, after the embedding, "
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| what | median (s) | AIS / this |")
    print("|---|---|---|")
    for label, seconds, ratio in rows:
        print(f"| {label} | {seconds:.2f} | {'-' if ratio is None else f'{ratio:.3f}'} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
