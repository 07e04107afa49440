"""PyTorch -> Keras weight layouts, shared by every checkpoint conversion.

A conversion walks a Keras network and yields, for every variable, ``(PyTorch
tensor name, Keras variable, layout transform)``; the transforms below turn a
PyTorch tensor into the Keras variable's layout, and :func:`to_torch_layout`
turns it back (for exports).  Only numpy is needed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ModelLoadError

WeightPair = tuple[str, Any, Any]


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (or array-like) as a float32 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def linear(w: np.ndarray) -> np.ndarray:
    """Linear (out, in) -> Dense (in, out)."""
    return w.T


def conv(w: np.ndarray) -> np.ndarray:
    """Conv2d (O, I, kh, kw) -> Conv2D (kh, kw, I, O)."""
    return w.transpose(2, 3, 1, 0)


def conv_transpose(w: np.ndarray) -> np.ndarray:
    """ConvTranspose2d (I, O, kh, kw) -> Conv2DTranspose (kh, kw, O, I)."""
    return w.transpose(2, 3, 1, 0)


def depthwise(w: np.ndarray) -> np.ndarray:
    """Depthwise Conv2d (C, 1, kh, kw) -> DepthwiseConv2D (kh, kw, C, 1)."""
    return w.transpose(2, 3, 0, 1)


def same(w: np.ndarray) -> np.ndarray:
    """A tensor whose layout is the same in both (biases, norms, embeddings)."""
    return w


def to_torch_layout(transform: Any, value: np.ndarray) -> np.ndarray:
    """Keras layout -> PyTorch layout: the inverse of one of the transforms above."""
    if transform is linear:
        return value.T
    if transform in (conv, conv_transpose):
        return value.transpose(3, 2, 0, 1)
    if transform is depthwise:
        return value.transpose(2, 3, 0, 1)
    if transform is same:
        return value
    raise ModelLoadError(f"No export for this tensor layout ({transform!r}).")


def dense_pairs(layer: Any, prefix: str) -> Iterator[WeightPair]:
    """A Dense layer as torch's ``Linear`` ``{prefix}.weight`` / ``{prefix}.bias``."""
    yield f"{prefix}.weight", layer.kernel, linear
    yield f"{prefix}.bias", layer.bias, same


def norm_pairs(layer: Any, prefix: str) -> Iterator[WeightPair]:
    """A LayerNormalization as torch's ``LayerNorm`` (``weight`` = gamma, ``bias`` = beta)."""
    yield f"{prefix}.weight", layer.gamma, same
    yield f"{prefix}.bias", layer.beta, same


def layers_of_type(layers: list[Any], type_name: str) -> list[Any]:
    """The layers of ``layers`` whose class is named ``type_name``."""
    return [lyr for lyr in layers if type(lyr).__name__ == type_name]


def mlp_dense_layers(mlp: Any) -> list[Any]:
    """The Dense layers of a keras-cv or keras-hub ``MLP`` block, in order."""
    seq = getattr(mlp, "dense_net", None) or mlp.mlp_block
    return [lyr for lyr in seq.layers if hasattr(lyr, "kernel")]
