"""Where vit_t's embedding time goes: each TinyViT stage, ours against MobileSAM's PyTorch.

One random MobileSAM checkpoint is loaded by both sides (ours through ``load_model``).
Every stage runs on the same input for both, the repeats interleaved (ours, MobileSAM,
ours, ...) so that a busy machine slows both alike; the table gives medians and the
ratio ours / MobileSAM.  Our side is the Keras backend chosen by ``KERAS_BACKEND``
(jax by default), each stage compiled on its own as the encoder runner compiles the
whole encoder (the weights passed as arguments, not folded in as constants).

    python benchmarks/tiny_vit_stages.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("NAPARI_SAM_KERAS_BACKEND", os.environ["KERAS_BACKEND"])
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def compiled(layers_fn, variables):
    """``fn(x)`` running ``layers_fn`` compiled by the backend, weights as arguments."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def pure(values, x):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return layers_fn(x)

        jitted = jax.jit(pure)
        return lambda x: jitted([v.value for v in variables], x).block_until_ready()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(layers_fn, jit_compile=True, autograph=False)
        return lambda x: fn(x).numpy()
    import torch

    def run(x):
        with torch.no_grad():
            return layers_fn(x).cpu()

    return run


def stages(encoder):
    """[(name, fn over channels-last maps, the layers it uses)] of our TinyViT."""
    import numpy as np
    from keras import ops

    from napari_sam_keras.keras_layers.activations import gelu

    def stem(images):
        mean = ops.convert_to_tensor(np.asarray(encoder.pixel_mean, np.float32))
        std = ops.convert_to_tensor(np.asarray(encoder.pixel_std, np.float32))
        return encoder.stem[1](gelu(encoder.stem[0]((images - mean) / std)))

    def seq(layers):
        def fn(x):
            for layer in layers:
                x = layer(x)
            return x

        return fn

    def neck(x):
        x = encoder.neck_norm1(encoder.neck_conv1(x))
        return encoder.neck_norm2(encoder.neck_conv2(encoder.neck_pad(x)))

    out = [("stem", stem, encoder.stem)]
    for i, (merge, blocks) in enumerate(encoder._stages()):
        if merge is not None:
            out.append((f"patch merging {i}", seq([merge]), [merge]))
        out.append((f"stage {i} ({len(blocks)} blocks)", seq(blocks), blocks))
    neck_layers = [encoder.neck_conv1, encoder.neck_norm1, encoder.neck_conv2, encoder.neck_norm2]
    out.append(("neck", neck, neck_layers))
    return out


def torch_stages(image_encoder):
    """MobileSAM's stages in the same order; each takes and returns its own layout."""
    enc = image_encoder

    def tokens_to_map(x, hw):
        return x.view(x.shape[0], hw, hw, x.shape[-1]).permute(0, 3, 1, 2)

    out = [("stem", enc.patch_embed)]
    for i, layer in enumerate(enc.layers):
        if i:
            out.append((f"patch merging {i}", enc.layers[i - 1].downsample))

        def run_blocks(x, blocks=layer.blocks):
            for b in blocks:
                x = b(x)
            return x

        out.append((f"stage {i} ({len(layer.blocks)} blocks)", run_blocks))
    out.append(("neck", lambda x: enc.neck(tokens_to_map(x, 64))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import keras
    import torch
    from keras import ops
    from mobile_sam_oracle import save_mobile_sam_checkpoint

    from napari_sam_keras import load_model
    from napari_sam_keras.keras_layers.tiny_vit import find_tiny_vit

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mobile_sam.pt"
        sam = save_mobile_sam_checkpoint(path, seed=0)
        network = load_model(path)
    encoder = find_tiny_vit(network.model.backbone)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (1, 1024, 1024, 3)).astype(np.float32)
    mean = np.asarray(encoder.pixel_mean, np.float32)
    std = np.asarray(encoder.pixel_std, np.float32)
    t_x = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())

    ours = [
        (n, fn, compiled(fn, [v for la in ls for v in la.variables]))
        for n, fn, ls in stages(encoder)
    ]
    theirs = torch_stages(sam.image_encoder)
    x = ops.convert_to_tensor(images)
    tx = t_x
    rows = []
    total_o = total_t = 0.0
    with torch.inference_mode():
        for (name, _, fn), (_, tfn) in zip(ours, theirs, strict=True):
            t = time.perf_counter()
            y = fn(x)
            first = time.perf_counter() - t
            ty = tfn(tx)
            to, tt = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                fn(x)
                to.append(time.perf_counter() - t)
                t = time.perf_counter()
                tfn(tx)
                tt.append(time.perf_counter() - t)
            mo, mt = float(np.median(to)), float(np.median(tt))
            total_o, total_t = total_o + mo, total_t + mt
            rows.append((name, mo, mt, first))
            x, tx = ops.convert_to_tensor(np.asarray(keras.ops.convert_to_numpy(y))), ty
    backend = keras.backend.backend()
    print(
        f"\nvit_t stages, 1024x1024, {backend} vs MobileSAM PyTorch {torch.__version__}, "
        f"{args.repeats} interleaved repeats, medians\n"
    )
    print(f"| stage | ours {backend} (s) | MobileSAM (s) | ratio | ours first call (s) |")
    print("|---|---|---|---|---|")
    for name, mo, mt, first in rows:
        print(f"| {name} | {mo:.3f} | {mt:.3f} | {mo / mt:.2f} | {first:.2f} |")
    print(f"| sum | {total_o:.3f} | {total_t:.3f} | {total_o / total_t:.2f} | |")


if __name__ == "__main__":
    main()
