"""The instance decoder ("AIS") against torch-em's UNETR decoder, in one run, on one machine.

Both sides get the same random decoder weights (torch-em's ``UNETR`` as micro-sam builds
it, converted by our loader) and the same random (1, 256, 64, 64) SAM embedding, and
make the three maps at the image size (1024 x 768 here: micro-sam's ``decode`` crops
and resizes, ours :meth:`InstanceSegmenter.predict_maps`).  The repeats are
interleaved (ours, torch-em, ours, ...) so that a busy machine slows both alike; the
table gives medians and the ratio ours / torch-em.  The watershed after the maps is
the same numpy/scipy code for both tools and is not timed.

    python benchmarks/instance_decoder.py --repeats 3
    KERAS_BACKEND=tensorflow python benchmarks/instance_decoder.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("NAPARI_SAM_KERAS_BACKEND", os.environ["KERAS_BACKEND"])
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

ORIGINAL_SIZE = (768, 1024)  # (H, W) of the image; its input frame in the 1024 x 1024 input
INPUT_SIZE = (768, 1024)


def torch_em_decoder(conv_transpose: bool, seed: int = 1):
    """torch-em's UNETR with a minimal SAM encoder (1024 px, 256-channel neck): only the
    decoder runs here, the encoder fixes the sizes."""
    import torch_em_oracle
    from official_sam import build_official_sam

    from napari_sam_keras.model.config import SAMConfig

    config = SAMConfig(
        image_size=1024,
        encoder_embed_dim=32,
        encoder_depth=1,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(0,),
        prompt_embed_dim=256,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    sam = build_official_sam(config, seed=0)
    return torch_em_oracle.build_unetr(sam.image_encoder, conv_transpose=conv_transpose, seed=seed)


def run(repeats: int, conv_transpose: bool) -> dict:
    import keras
    import torch
    import torch_em_oracle
    from benchmark import interleaved_medians

    from napari_sam_keras.model.decoder_conversion import decoder_from_state_dict

    torch.set_num_threads(os.cpu_count() or 1)
    unetr = torch_em_decoder(conv_transpose)
    ours = decoder_from_state_dict(
        {k: v.numpy() for k, v in torch_em_oracle.decoder_state(unetr).items()}
    )
    runner = ours.runner()
    features = np.random.default_rng(0).standard_normal((1, 64, 64, 256)).astype(np.float32)

    from napari_sam_keras.processing.mask_upscaling import upscale_logits

    def our_maps():
        raw = runner(features)
        maps = np.transpose(np.asarray(raw[0], np.float32), (2, 0, 1))
        return upscale_logits(maps, 1024, INPUT_SIZE, ORIGINAL_SIZE)

    def their_maps():
        return torch_em_oracle.reference_maps(unetr, features, INPUT_SIZE, ORIGINAL_SIZE)[0]

    t = time.perf_counter()
    mine = our_maps()
    first = time.perf_counter() - t
    with torch.inference_mode():
        theirs = their_maps()
        med = interleaved_medians({"ours": our_maps, "torch_em": their_maps}, repeats)
    return {
        "backend": keras.backend.backend(),
        "upsampling": "transposed conv" if conv_transpose else "bilinear",
        "ours": med["ours"],
        "torch_em": med["torch_em"],
        "ours_first": first,
        "max_abs_difference": float(np.abs(mine - theirs).max()),
        "repeats": repeats,
    }


def stages(repeats: int) -> list[tuple[str, float, float]]:
    """[(stage, ours s, torch-em s)]: each decoder stage compiled on its own, same inputs."""
    import keras
    import torch
    import torch_em_oracle
    from benchmark import interleaved_medians
    from keras import ops
    from tiny_vit_stages import compiled

    from napari_sam_keras.keras_layers.instance_decoder import centre_crop_like
    from napari_sam_keras.model.decoder_conversion import decoder_from_state_dict

    torch.set_num_threads(os.cpu_count() or 1)
    unetr = torch_em_decoder(False)
    model = decoder_from_state_dict(
        {k: v.numpy() for k, v in torch_em_oracle.decoder_state(unetr).items()}
    ).model
    emb = np.random.default_rng(0).standard_normal((1, 64, 64, 256)).astype(np.float32)

    def to_torch(a):
        return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(a), (0, 3, 1, 2))))

    def ours(layer_fn, layers, *inputs):
        fn = compiled(lambda xs: layer_fn(*xs), [v for la in layers for v in la.variables])
        xs = [ops.convert_to_tensor(a) for a in inputs]
        return lambda: fn(xs)

    d, t = model, unetr
    z = [emb]
    for deconv in d.deconvs:
        z.append(np.asarray(ops.convert_to_numpy(deconv(z[-1]))))
    x = [np.asarray(ops.convert_to_numpy(d.base(emb)))]
    for sampler, block, skip in zip(d.samplers, d.blocks, z[1:4], strict=True):
        up = sampler(x[-1])
        x.append(
            np.asarray(
                ops.convert_to_numpy(block(ops.concatenate([up, centre_crop_like(skip, up)], -1)))
            )
        )
    out_up = np.asarray(ops.convert_to_numpy(d.deconv_out(x[-1])))
    tz = [to_torch(a) for a in z]
    tx = [to_torch(a) for a in x]
    pairs = []
    for i, (deconv, tdeconv) in enumerate(
        zip(d.deconvs, [t.deconv1, t.deconv2, t.deconv3, t.deconv4], strict=True)
    ):
        pairs.append(
            (
                f"deconv{i + 1} ({z[i + 1].shape[1]}^2)",
                ours(deconv, [deconv], z[i]),
                lambda m=tdeconv, a=tz[i]: m(a),
            )
        )
    pairs.append(("base (64^2)", ours(d.base, [d.base], emb), lambda: t.base(tz[0])))
    for i, (sampler, block) in enumerate(zip(d.samplers, d.blocks, strict=True)):

        def fo(a, skip, sampler=sampler, block=block):
            up = sampler(a)
            return block(ops.concatenate([up, centre_crop_like(skip, up)], -1))

        def ft(i=i):
            up = t.decoder.samplers[i](tx[i])
            return t.decoder.blocks[i](t.decoder._concat(up, tz[i + 1]))

        pairs.append(
            (
                f"decoder stage {i} ({z[i + 1].shape[1]}^2)",
                ours(fo, [sampler, block], x[i], z[i + 1]),
                ft,
            )
        )
    pairs.append(
        (
            "deconv_out (1024^2)",
            ours(d.deconv_out, [d.deconv_out], x[3]),
            lambda: t.deconv_out(tx[3]),
        )
    )

    def head(a, skip):
        return ops.sigmoid(d.out_conv(d.decoder_head(ops.concatenate([a, skip], -1))))

    t_up = to_torch(out_up)
    pairs.append(
        (
            "head + out conv (1024^2)",
            ours(head, [d.decoder_head, d.out_conv], out_up, z[4]),
            lambda: torch.sigmoid(t.out_conv(t.decoder_head(torch.cat([t_up, tz[4]], 1)))),
        )
    )
    rows = []
    with torch.inference_mode():
        for name, fo, ft in pairs:
            fo(), ft()
            med = interleaved_medians({"ours": fo, "torch_em": ft}, repeats)
            rows.append((name, med["ours"], med["torch_em"]))
            print(name, rows[-1][1:], flush=True)
    print(
        f"\n| stage | ours {keras.backend.backend()} (s) | torch-em (s) | ratio |\n|---|---|---|---|"
    )
    for name, a, b in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    sa, sb = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"| sum | {sa:.2f} | {sb:.2f} | {sa / sb:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conv-transpose", action="store_true", help="the other upsampler")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("--stages", action="store_true", help="time each decoder stage instead")
    args = parser.parse_args()
    if args.stages:
        stages(args.repeats)
        return
    r = run(args.repeats, args.conv_transpose)
    if args.json:
        print("RESULT " + json.dumps(r))
        return
    print(
        f"\ninstance decoder, 64x64x256 embedding -> 3 maps at 1024x768, {r['upsampling']}, "
        f"{r['backend']}, {r['repeats']} interleaved repeats, medians\n"
    )
    print("| what | torch-em (s) | ours (s) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| embedding -> maps | {r['torch_em']:.2f} | {r['ours']:.2f} | "
        f"{r['ours'] / r['torch_em']:.2f} |"
    )
    print(f"| ours, first call incl. compilation | | {r['ours_first']:.2f} | |")
    print(f"\nlargest difference of the maps: {r['max_abs_difference']:.1e}")


if __name__ == "__main__":
    main()
