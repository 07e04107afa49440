"""SAM 3's costly passes over keras-hub's layers, with attention taken in cache-sized steps.

keras-hub's SAM 3 layers call ``ops.dot_product_attention`` on all heads and tokens
at once.  On a CPU, XLA then materialises every logit map: (16, 5184, 5184) floats
(1.7 GB) in each global layer of the ViT at 1008 px, (9 x 16, 576, 576) in each
windowed one, (8, 5184, 5184) in each of the DETR encoder's six self-attentions.
Those layers are memory-bound, several times slower than PyTorch's fused attention
on the same CPU.  :func:`vit_features` and :func:`detr_encoder_features` run the same
layers and weights in the same order, and compute the attention as
:mod:`.vit_encoder` does for SAM 1, with its :func:`~.vit_encoder.attend_in_steps`:
one window's heads, or one head's chunk of query rows, per step (``ops.map``), so
each step's logits and softmax stay in the CPU cache.  The results equal keras-hub's to float round-off
(``tests/core/test_sam3_fixes.py``).
"""

from __future__ import annotations

from typing import Any

from keras import ops

from .activations import gelu
from .vit_encoder import DEFAULT_QUERY_CHUNK, attend_in_steps


def _heads(t, heads: int, head_dim: int):
    """(N, T, heads * d) -> (N * heads, T, d)."""
    tokens = t.shape[1]
    t = ops.transpose(ops.reshape(t, (-1, tokens, heads, head_dim)), (0, 2, 1, 3))
    return ops.reshape(t, (-1, tokens, head_dim))


def _merge_heads(out, heads: int, tokens: int, head_dim: int):
    """(N * heads, T, d) -> (N, T, heads * d)."""
    out = ops.reshape(out, (-1, heads, tokens, head_dim))
    return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, tokens, heads * head_dim))


def _rotate_pairs(x):
    """(..., d) -> (-x1, x0, -x3, x2, ...): the pairwise rotation of rotary embeddings."""
    pairs = ops.reshape(x, (*x.shape[:-1], x.shape[-1] // 2, 2))
    return ops.reshape(ops.stack((-pairs[..., 1], pairs[..., 0]), axis=-1), x.shape)


def _rope_attention(layer: Any, x, grid: tuple[int, int], query_chunk: int):
    """keras-hub ``SAM3RoPEAttention`` on (N, gh, gw, D) windows (or the whole map)."""
    attn = layer.attention
    heads, head_dim = attn.num_heads, attn.head_dim
    tokens = grid[0] * grid[1]
    flat = ops.reshape(x, (-1, tokens, x.shape[-1]))
    cos = layer.rotary_emb.rope_embeddings_cos  # (tokens, d): the layer's own tables
    sin = layer.rotary_emb.rope_embeddings_sin
    q = _heads(attn.q_proj(flat), heads, head_dim)
    k = _heads(attn.k_proj(flat), heads, head_dim)
    v = _heads(attn.v_proj(flat), heads, head_dim)
    q = q * cos + _rotate_pairs(q) * sin
    k = k * cos + _rotate_pairs(k) * sin
    out = attend_in_steps(q, k, v, heads, attn.scale, grid, query_chunk)
    out = _merge_heads(out, heads, tokens, head_dim)
    return attn.o_proj(ops.reshape(out, (-1, *grid, heads * head_dim)))


def _vit_layer(layer: Any, x, query_chunk: int):
    """keras-hub ``SAM3ViTLayer.call`` (inference) with :func:`attend_in_steps`."""
    _, h, w, d = x.shape
    y = layer.layer_norm1(x)
    size = layer.window_size
    if size > 0:
        y = ops.reshape(y, (-1, h // size, size, w // size, size, d))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, size, size, d))
        y = _rope_attention(layer, y, (size, size), query_chunk)
        y = ops.reshape(y, (-1, h // size, w // size, size, size, d))
        y = ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, h, w, d))
    else:
        y = _rope_attention(layer, y, (h, w), query_chunk)
    x = x + y
    return x + _mlp(layer.mlp, layer.layer_norm2(x))


def _mlp(mlp: Any, x):
    """keras-hub ``SAM3MLP`` (inference); its exact GELU as :func:`.activations.gelu`."""
    if mlp.activation != "gelu":
        return mlp(x)
    return mlp.fc2(gelu(mlp.fc1(x)))


def vit_features(vision_encoder: Any, pixel_values, query_chunk: int = DEFAULT_QUERY_CHUNK):
    """keras-hub ``SAM3VisionEncoder.call`` (inference): the FPN levels and their
    position encodings."""
    vit = vision_encoder.backbone
    h = vit.image_shape[0] // vit.patch_size
    w = vit.image_shape[1] // vit.patch_size
    x = ops.reshape(vit.embeddings(pixel_values), (-1, h, w, vit.hidden_dim))
    x = vit.layer_norm(x)
    for layer in vit.layers:
        x = _vit_layer(layer, x, query_chunk)
    return vision_encoder.vision_neck(x)


def _self_attention(attn: Any, with_position, values, grid: tuple[int, int], query_chunk: int):
    """keras-hub ``SAM3Attention`` with query = key = ``with_position``, no mask."""
    heads, head_dim = attn.num_heads, attn.head_dim
    tokens = values.shape[1]
    q = _heads(attn.q_proj(with_position), heads, head_dim)
    k = _heads(attn.k_proj(with_position), heads, head_dim)
    v = _heads(attn.v_proj(values), heads, head_dim)
    out = attend_in_steps(q, k, v, heads, attn.scale, grid, query_chunk)
    return attn.o_proj(_merge_heads(out, heads, tokens, head_dim))


def detr_encoder_features(
    detr_encoder: Any,
    vision_features,
    text_features,
    vision_pos_embeds,
    text_masks,
    query_chunk: int = DEFAULT_QUERY_CHUNK,
):
    """keras-hub ``SAM3DetrEncoder.call`` (inference): (hidden states, flat positions),
    the image tokens' self-attention in cache-sized steps."""
    grid = (detr_encoder.height, detr_encoder.width)
    tokens = grid[0] * grid[1]
    x = ops.reshape(vision_features, (-1, tokens, vision_features.shape[-1]))
    position = ops.reshape(vision_pos_embeds, (-1, tokens, vision_pos_embeds.shape[-1]))
    # keras-hub's create_bidirectional_mask: every image token sees the same prompt tokens
    cross_mask = ops.tile(ops.cast(text_masks, "bool")[:, None, None, :], (1, 1, tokens, 1))
    for layer in detr_encoder.layers:
        y = layer.layer_norm1(x)
        x = x + _self_attention(layer.self_attn, y + position, y, grid, query_chunk)
        y = layer.layer_norm2(x)
        x = x + layer.cross_attn(
            query=y, key=text_features, value=text_features, attention_mask=cross_mask
        )
        x = x + _mlp(layer.mlp, layer.layer_norm3(x))
    return x, position
