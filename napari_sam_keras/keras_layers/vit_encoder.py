"""The image encoder's forward pass over the ViTDet backbone's layers (:mod:`.vit_det`).

It runs the backbone's own layers (patch embedding, layer norms, MLPs, the
attention projections, the neck) in the backbone's order, and computes the
attention itself differently in one respect: a global-attention block's
(heads, 4096, 4096) attention map (805 MB in float32 for ViT-B at 1024 px)
is never materialised at once.  Queries are taken a chunk per head at a time
(``ops.map``), so each chunk's logits, relative-position terms and softmax
stay in the CPU cache.  Every query still sees every key; the result equals
the backbone's to float round-off, in about two thirds of the time of those
blocks on a 2-core CPU, with far less peak memory.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

#: Queries per chunk of a global attention (a (chunk, tokens) logit block per step).
DEFAULT_QUERY_CHUNK = 1024


def _rows_per_chunk(height: int, width: int, query_chunk: int) -> int:
    """Rows of the token grid per chunk: the largest divisor of ``height`` that fits."""
    best = 1
    for rows in range(1, height + 1):
        if height % rows == 0 and rows * width <= query_chunk:
            best = rows
    return best


def _attend(q, k, v, rel_h, rel_w, scale, key_grid):
    """softmax(q k^T * scale + decomposed relative positions) v, batched over axis 0.

    q: (N, rows * w, d) for ``rows`` rows of a (h, w) query grid; k, v: (N, h * w, d);
    rel_h: (N, rows, w, h) and rel_w: (N, rows, w, w), or None.
    """
    h, w = key_grid
    logits = ops.matmul(q * scale, ops.swapaxes(k, -1, -2))
    if rel_h is not None:
        rows = rel_h.shape[1]
        logits = ops.reshape(logits, (-1, rows, w, h, w))
        logits = logits + rel_h[..., :, None] + rel_w[..., None, :]
        logits = ops.reshape(logits, (-1, rows * w, h * w))
    return ops.matmul(ops.softmax(logits, axis=-1), v)


def attend_in_steps(
    q, k, v, heads: int, scale, grid: tuple[int, int], query_chunk: int, rel_h=None, rel_w=None
):
    """:func:`_attend` over N maps (or windows) of gh x gw tokens, in cache-sized steps.

    q, k, v: (N * heads, gh * gw, d); rel_h (N * heads, gh, gw, gh) and rel_w
    (N * heads, gh, gw, gw), or None.  A map of at most ``query_chunk`` tokens is one
    step with all its heads; a larger one is taken one head's few grid rows of queries
    against all its keys at a time.  Without relative terms on the torch backend,
    PyTorch's fused attention (``ops.dot_product_attention``) does the stepping itself.
    Returns (N * heads, gh * gw, d).
    """
    gh, gw = grid
    tokens, head_dim = gh * gw, q.shape[-1]
    relative = rel_h is not None
    if not relative and keras.backend.backend() == "torch":
        # PyTorch's fused attention already keeps its logits in cache, in fewer eager calls
        # (a global SAM 3 ViT layer on 2 cores: 0.64 s against 0.84 s in steps).
        def tokens_first(t):  # (N * heads, T, d) -> (N, T, heads, d)
            return ops.transpose(ops.reshape(t, (-1, heads, tokens, head_dim)), (0, 2, 1, 3))

        out = ops.dot_product_attention(*map(tokens_first, (q, k, v)), scale=scale)
        return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, tokens, head_dim))
    rows = _rows_per_chunk(gh, gw, query_chunk)
    if rows == gh:
        pieces = [ops.reshape(t, (-1, heads, tokens, head_dim)) for t in (q, k, v)]
        if relative:
            pieces += [
                ops.reshape(rel_h, (-1, heads, gh, gw, gh)),
                ops.reshape(rel_w, (-1, heads, gh, gw, gw)),
            ]

        def step(args):
            rel = (args[3], args[4]) if relative else (None, None)
            return _attend(args[0], args[1], args[2], *rel, scale, grid)

        return ops.reshape(ops.map(step, tuple(pieces)), (-1, tokens, head_dim))

    def chunk(args):
        head = args[1]
        k_h, v_h = ops.take(k, head, axis=0)[None], ops.take(v, head, axis=0)[None]
        rel = (args[2][None], args[3][None]) if relative else (None, None)
        return _attend(args[0][None], k_h, v_h, *rel, scale, grid)[0]

    count = q.shape[0] if q.shape[0] is not None else ops.shape(q)[0]
    pieces = (ops.reshape(q, (-1, rows * gw, head_dim)), ops.repeat(ops.arange(count), gh // rows))
    if relative:
        pieces += (ops.reshape(rel_h, (-1, rows, gw, gh)), ops.reshape(rel_w, (-1, rows, gw, gw)))
    return ops.reshape(ops.map(chunk, pieces), (-1, tokens, head_dim))


class BackboneForward(keras.Model):
    """Preprocessed image batch (B, S, S, 3), 0..255 -> image embeddings (B, e, e, c)."""

    def __init__(
        self,
        backbone: Any,
        config: Any,
        query_chunk: int = DEFAULT_QUERY_CHUNK,
        **kw: Any,
    ) -> None:
        super().__init__(dtype=backbone.dtype_policy, **kw)
        self.backbone = backbone
        self.sam_config = config
        self.query_chunk = int(query_chunk)
        layers = backbone.layers[1:]  # without the input layer
        # by class name: our blocks (.vit_det) and keras-cv's have the same layout
        self.blocks = [la for la in layers if type(la).__name__ == "WindowedTransformerEncoder"]
        first = layers.index(self.blocks[0])
        self.front = layers[:first]
        self.neck = layers[first + len(self.blocks) :]
        if layers[first : first + len(self.blocks)] != self.blocks or len(self.neck) != 1:
            raise ValueError("Unexpected ViTDet backbone layout; cannot run its forward pass.")
        # Its layers are built (they belong to a built backbone); no weights of its own.
        self.built = True

    def call(self, images, training=False):
        x = images
        mean = ops.array([m / 255.0 for m in self.sam_config.pixel_mean], x.dtype)
        std = ops.array([s / 255.0 for s in self.sam_config.pixel_std], x.dtype)
        for layer in self.front:
            x = layer(x)
            if isinstance(layer, keras.layers.Rescaling):
                x = (x - mean) / std  # the backbone normalises right after rescaling
        for block in self.blocks:
            x = self._block(block, x)
        return self.neck[0](x)

    def _block(self, block, x):
        shortcut = x
        attn = block.attention
        # q, k, v of the real tokens only; the window padding's tokens are zeros after
        # layer_norm1, so their q, k, v are the bias, which is what they get here.
        qkv = attn.qkv(block.layer_norm1(x))
        if block.window_size > 0:
            part = block.window_partitioning
            h, w = x.shape[1], x.shape[2]
            windows, hw_padded = part.partition(qkv)
            if tuple(hw_padded) != (h, w) and attn.qkv.use_bias:
                inside, _ = part.partition(ops.ones_like(qkv[..., :1]))
                windows = windows + (1 - inside) * ops.cast(attn.qkv.bias, qkv.dtype)
            out = self._attention(attn, windows)
            out = part.unpartition(out, HW_padded=hw_padded, HW=(h, w))
        else:
            out = self._attention(attn, qkv)
        x = shortcut + attn.projection(out)  # per token: the padding's rows are dropped
        return x + block.mlp_block(block.layer_norm2(x))

    def _attention(self, attn, qkv):
        """keras-cv ``MultiHeadAttentionWithRelativePE.call`` from q, k, v, before the
        output projection, taken in steps that stay in the CPU cache."""
        b, h, w = ops.shape(qkv)[0], qkv.shape[1], qkv.shape[2]
        heads, key_dim = attn.num_heads, attn.key_dim
        qkv = ops.reshape(qkv, (b, h * w, 3, heads, key_dim))
        qkv = ops.reshape(ops.transpose(qkv, (2, 0, 3, 1, 4)), (3, -1, h * w, key_dim))
        q, k, v = qkv[0], qkv[1], qkv[2]  # (b * heads, tokens, key_dim)
        if attn.use_rel_pos:
            rel = attn.add_decomposed_reative_pe
            grid = ops.reshape(q, (-1, h, w, key_dim))
            rel_h = ops.einsum("bhwc,hkc->bhwk", grid, rel._get_rel_pos(h, h, rel.rel_pos_h))
            rel_w = ops.einsum("bhwc,wkc->bhwk", grid, rel._get_rel_pos(w, w, rel.rel_pos_w))
        else:
            rel_h = rel_w = None
        out = attend_in_steps(q, k, v, heads, attn.scale, (h, w), self.query_chunk, rel_h, rel_w)
        out = ops.reshape(out, (b, heads, h, w, key_dim))
        return ops.reshape(ops.transpose(out, (0, 2, 3, 1, 4)), (b, h, w, heads * key_dim))


def backbone_forward(backbone: Any, config: Any, query_chunk: int = DEFAULT_QUERY_CHUNK) -> Any:
    """A Keras model computing ``backbone(images)`` with chunked global attention."""
    return BackboneForward(backbone, config, query_chunk=query_chunk)
