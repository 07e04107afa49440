"""Low-resolution mask logits -> masks at the original image size.

The official code upsamples the logits bilinearly to the padded input size,
crops the padding and resizes bilinearly to the original size (PyTorch
``interpolate``, ``align_corners=False``).  Both steps are linear and
separable, so they collapse into one matrix per axis: ``R_y @ logits @ R_x.T``.
Each row of those matrices has at most four non-zero taps, so they are kept
sparse: upscaling three masks to 1024 x 768 is a few million multiply-adds.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of PyTorch's bilinear resize along one axis (align_corners=False)."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    mat = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(mat, (rows, i0), 1.0 - w1)
    np.add.at(mat, (rows, i1), w1)
    return mat


@lru_cache(maxsize=32)
def upscale_matrices(
    low_res: int, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Sparse row and column matrices taking (low_res, low_res) logits to ``original_size``."""
    mats = []
    for axis in range(2):
        first = bilinear_matrix(low_res, image_size)[: input_size[axis]]
        second = bilinear_matrix(input_size[axis], original_size[axis])
        mats.append(sparse.csr_matrix((second @ first).astype(np.float32)))
    return mats[0], mats[1]


def upscale_logits(
    low_res_logits: np.ndarray,
    image_size: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> np.ndarray:
    """(..., m, m) low-res logits -> (..., H, W) logits at the original image size."""
    m = low_res_logits.shape[-1]
    rows, cols = upscale_matrices(m, image_size, tuple(input_size), tuple(original_size))
    lead = low_res_logits.shape[:-2]
    flat = low_res_logits.astype(np.float32, copy=False).reshape(-1, m, m)
    out = np.empty((flat.shape[0], rows.shape[0], cols.shape[0]), np.float32)
    for k, logits in enumerate(flat):
        out[k] = (cols @ (rows @ logits).T).T
    return out.reshape(*lead, rows.shape[0], cols.shape[0])
