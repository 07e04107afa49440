"""Synthetic microscopy-like sample images, made with numpy (no download, no napari import).

* :func:`sample_image`: a 2D fluorescence-like field of cell nuclei (uint16).
* :func:`sample_stack`: a 3D stack (z, y, x) of nuclei-like ellipsoids (uint16).

``make_sample_image`` and ``make_sample_stack`` return them as napari layer data
tuples; the plugin manifest (``napari.yaml``) offers them under
*File > Open Sample > napari-sam-keras*.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_sample_image", "make_sample_stack", "sample_image", "sample_stack"]


def _centres(rng: np.random.Generator, shape, count: int, radius: float) -> np.ndarray:
    """Up to ``count`` random centres at least ~2.4 radii apart, inside ``shape``."""
    shape = np.asarray(shape, dtype=float)
    margin = np.minimum(radius * 1.2, shape / 4)
    chosen: list[np.ndarray] = []
    for _ in range(count * 40):
        c = margin + rng.random(len(shape)) * (shape - 2 * margin)
        if all(
            np.linalg.norm((c - o) / np.maximum(shape / shape.max(), 1e-9)) > 2.4 * radius
            for o in chosen
        ):
            chosen.append(c)
            if len(chosen) == count:
                break
    return np.array(chosen)


def _render(shape, centres, radii, axes_scale, rng, rotate2d: bool) -> np.ndarray:
    """Sum of soft-edged ellipses/ellipsoids with a mild texture, float in 0..1."""
    out = np.zeros(shape, dtype=np.float64)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    for c, r in zip(centres, radii, strict=True):
        semi = r * np.asarray(axes_scale) * (0.8 + 0.4 * rng.random(len(shape)))
        d = [g - ci for g, ci in zip(grids, c, strict=True)]
        if rotate2d:
            a = rng.random() * np.pi
            y, x = d[-2], d[-1]
            d[-2], d[-1] = np.cos(a) * y - np.sin(a) * x, np.sin(a) * y + np.cos(a) * x
        rr = np.sqrt(sum((di / si) ** 2 for di, si in zip(d, semi, strict=True)))
        body = 1.0 / (1.0 + np.exp((rr - 1.0) * 12.0))
        brightness = 0.55 + 0.45 * rng.random()
        out += brightness * body * (1.0 - 0.25 * rr**2).clip(0.6, 1.0)
    return out


def _to_uint16(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    background = 300.0
    signal = 2600.0 * field
    # smooth illumination gradient plus shot-like and read noise
    ramp = np.linspace(0.9, 1.1, field.shape[-1])[None, :]
    expected = (background + signal) * ramp
    noisy = rng.poisson(np.clip(expected, 0, None) / 4.0) * 4.0 + rng.normal(0, 25, field.shape)
    return np.clip(noisy, 0, 65535).astype(np.uint16)


def sample_image(shape: tuple[int, int] = (256, 256), n_cells: int = 18, seed: int = 0):
    """A 2D image of nuclei-like blobs on a noisy background, uint16 (rows, columns)."""
    rng = np.random.default_rng(seed)
    radius = min(shape) / 14
    centres = _centres(rng, shape, n_cells, radius)
    radii = radius * (0.75 + 0.5 * rng.random(len(centres)))
    field = _render(shape, centres, radii, (1.0, 1.3), rng, rotate2d=True)
    return _to_uint16(field, rng)


def sample_stack(shape: tuple[int, int, int] = (16, 128, 128), n_cells: int = 8, seed: int = 1):
    """A 3D stack (z, y, x) of nuclei-like ellipsoids, uint16; z is sampled coarser."""
    rng = np.random.default_rng(seed)
    radius = min(shape[1:]) / 9
    # z axis: the stack is anisotropic, each voxel is ~3x deeper than wide
    centres = _centres(rng, (shape[0] * 3, *shape[1:]), n_cells, radius) / np.array([3, 1, 1])
    radii = radius * (0.75 + 0.5 * rng.random(len(centres)))
    field = _render(shape, centres, radii, (1.0 / 3.0, 1.0, 1.2), rng, rotate2d=False)
    return _to_uint16(field, rng)


def make_sample_image():
    """napari sample-data hook: the 2D sample as a layer data tuple."""
    return [(sample_image(), {"name": "SAM sample cells", "colormap": "gray"}, "image")]


def make_sample_stack():
    """napari sample-data hook: the 3D sample as a layer data tuple (z scaled 3x)."""
    return [
        (
            sample_stack(),
            {"name": "SAM sample stack", "colormap": "gray", "scale": (3.0, 1.0, 1.0)},
            "image",
        )
    ]
