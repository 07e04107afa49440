"""Train a toy SAM on synthetic nuclei, for the README screenshot (no real weights needed).

No SAM weights can be downloaded on the machine the screenshot is made on, and
random weights give meaningless masks.  This trains the tiny test architecture
(256 px input, 2 encoder blocks, 32-dim prompts) from scratch for ~15 minutes on
2 CPU cores, on images drawn like :mod:`napari_sam_keras.sample_data`, with box,
point and box+point prompts.  It segments those blobs and nothing else: a
demonstration of the plugin, not a substitute for SAM's weights.

    python docs/toy_sam.py OUT_DIR [STEPS]      # writes a Keras preset directory
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

# the training step below is TensorFlow code
os.environ["KERAS_BACKEND"] = os.environ["NAPARI_SAM_KERAS_BACKEND"] = "tensorflow"

from napari_sam_keras.model.config import SAMConfig
from napari_sam_keras.processing.images import model_input, to_rgb_uint8
from napari_sam_keras.runtime.backend import import_ml_stack
from napari_sam_keras.sample_data import _centres, _to_uint16

TOY = SAMConfig(
    image_size=256,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)
SIZE = 256


def scene(rng: np.random.Generator):
    """(model input (S, S, 3) float32, label image (S, S)) of one synthetic field."""
    radius = SIZE / rng.uniform(10, 16)
    centres = _centres(rng, (SIZE, SIZE), int(rng.integers(6, 20)), radius)
    field = np.zeros((SIZE, SIZE))
    labels = np.zeros((SIZE, SIZE), np.int32)
    for i, c in enumerate(centres, start=1):
        r = radius * (0.75 + 0.5 * rng.random())
        semi = r * np.array([1.0, 1.3]) * (0.8 + 0.4 * rng.random(2))
        reach = int(semi.max() * 1.6) + 2
        y0, y1 = max(0, int(c[0]) - reach), min(SIZE, int(c[0]) + reach)
        x0, x1 = max(0, int(c[1]) - reach), min(SIZE, int(c[1]) + reach)
        rows, cols = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dy, dx = rows - c[0], cols - c[1]
        a = rng.random() * np.pi
        y, x = np.cos(a) * dy - np.sin(a) * dx, np.sin(a) * dy + np.cos(a) * dx
        rr = np.sqrt((y / semi[0]) ** 2 + (x / semi[1]) ** 2)
        body = 1.0 / (1.0 + np.exp((rr - 1.0) * 12.0))
        brightness = 0.55 + 0.45 * rng.random()
        field[y0:y1, x0:x1] += brightness * body * (1.0 - 0.25 * rr**2).clip(0.6, 1.0)
        sub = labels[y0:y1, x0:x1]
        sub[(rr < 1.0) & (sub == 0)] = i
    image = _to_uint16(field, rng)
    return model_input(to_rgb_uint8(image), SIZE, TOY.pixel_mean)[0], labels


def prompts(data, rng: np.random.Generator, batch: int, with_box: bool):
    """A batch of prompts of one kind (fixed shapes: one compiled step per kind)."""
    images, points, point_labels, boxes, targets = [], [], [], [], []
    for _ in range(batch):
        image, labels = data[rng.integers(len(data))]
        ids = np.unique(labels[labels > 0])
        mask = labels == ids[rng.integers(len(ids))]
        ys, xs = np.nonzero(mask)
        k = rng.integers(len(xs))
        point = np.array([[xs[k], ys[k]]], np.float64)
        if with_box:
            box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], float) + rng.normal(0, 2, 4)
            boxes.append(box.reshape(1, 2, 2))
            use_point = rng.random() < 0.5
            points.append(point if use_point else np.zeros((1, 2)))
            point_labels.append([1.0 if use_point else -1.0])
        else:  # points only: the official pad point (0, 0) with label -1
            points.append(np.concatenate([point, np.zeros((1, 2))]))
            point_labels.append([1.0, -1.0])
        images.append(image)
        targets.append(mask[2::4, 2::4].astype(np.float32))  # the 64 x 64 low-res grid
    box_array = np.stack(boxes) if with_box else np.zeros((batch, 0, 2, 2))
    return [
        np.stack(images).astype(np.float32),
        np.asarray(points, np.float32),
        np.asarray(point_labels, np.float32),
        box_array.astype(np.float32),
        np.stack(targets),
    ]


def train(out_dir: Path, steps: int = 1500, seed: int = 0) -> Path:
    import_ml_stack()
    import keras
    import tensorflow as tf

    from napari_sam_keras.model.loading import save_preset
    from napari_sam_keras.model.network import build_sam

    rng = np.random.default_rng(seed)
    data = [scene(rng) for _ in range(96)]
    network = build_sam(TOY, seed=seed)
    model = network.model
    optimizer = keras.optimizers.Adam(1e-3)
    variables = model.trainable_variables

    def make_step():
        @tf.function(jit_compile=True)
        def step(images, points, point_labels, boxes, target):
            with tf.GradientTape() as tape:
                features = model.backbone(images, training=True)
                n = tf.shape(images)[0]
                encoded = model.prompt_encoder(
                    {
                        "points": points,
                        "labels": point_labels,
                        "boxes": boxes,
                        "masks": tf.zeros((n, 0, 64, 64, 1)),
                    }
                )
                decoded = model.mask_decoder(
                    {
                        "image_embeddings": features,
                        "image_pe": encoded["dense_positional_embeddings"],
                        "sparse_prompt_embeddings": encoded["sparse_embeddings"],
                        "dense_prompt_embeddings": encoded["dense_embeddings"],
                    }
                )
                logits, iou = decoded["masks"], decoded["iou_pred"]
                g = target[:, None]
                gb = tf.broadcast_to(g, tf.shape(logits))
                bce = tf.reduce_mean(
                    tf.nn.sigmoid_cross_entropy_with_logits(labels=gb, logits=logits), axis=[2, 3]
                )
                p = tf.sigmoid(logits)
                dice = 1 - (2 * tf.reduce_sum(p * g, axis=[2, 3]) + 1) / (
                    tf.reduce_sum(p + g, axis=[2, 3]) + 1
                )
                hard = tf.cast(logits > 0, tf.float32)
                true_iou = tf.reduce_sum(hard * g, axis=[2, 3]) / (
                    tf.reduce_sum(tf.maximum(hard, gb), axis=[2, 3]) + 1e-6
                )
                loss = tf.reduce_mean(bce + dice) + tf.reduce_mean(
                    (iou - tf.stop_gradient(true_iou)) ** 2
                )
            grads = tape.gradient(loss, variables)
            grads = [
                tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)
            ]
            optimizer.apply(grads, variables)
            return loss, tf.reduce_mean(true_iou[:, 0])

        return step

    box_step, point_step = make_step(), make_step()
    start = time.time()
    history = []
    for i in range(steps):
        a = box_step(*prompts(data, rng, 6, True))
        b = point_step(*prompts(data, rng, 6, False))
        history.append([float(a[0]), float(a[1]), float(b[0]), float(b[1])])
        if i % 100 == 0 or i == steps - 1:
            loss_box, iou_box, loss_pt, iou_pt = np.mean(history[-100:], axis=0)
            print(
                f"step {i}: box IoU {iou_box:.2f}, point IoU {iou_pt:.2f} "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )
    return save_preset(network, out_dir, overwrite=True)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(train(target, int(sys.argv[2]) if len(sys.argv) > 2 else 1500))
