"""Synthetic test domains where the demo model (trained on bright blurry nuclei on a dark,
noisy background) is poor: other object shapes, contrasts and backgrounds.

* ``"dark_cells"``: dark, sharp-edged, elongated cells on a bright textured background
  (inverted contrast);
* ``"rings"``: bright ring-shaped cells (membrane stain) with a dim interior;
* ``"squares"``: rectangular, flat-topped objects on a striped background.

Each image comes with its instance labels (0 = background).
"""

from __future__ import annotations

import numpy as np

DOMAINS = ("dark_cells", "rings", "squares")


def _texture(rng, shape, scale):
    from scipy import ndimage

    noise = rng.normal(0, 1, shape)
    smooth = ndimage.gaussian_filter(noise, scale)
    return smooth / (smooth.std() + 1e-9)


def domain_image(domain: str, seed: int, shape=(192, 192), count: int = 9):
    """(image uint16, labels int32) of ``domain``."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    labels = np.zeros(shape, np.int32)
    field = np.zeros(shape)
    placed = 0
    for _ in range(count * 30):
        if placed == count:
            break
        cy, cx = rng.uniform(18, h - 18), rng.uniform(18, w - 18)
        a, b = rng.uniform(9, 16), rng.uniform(6, 10)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = np.cos(angle) * dx + np.sin(angle) * dy
        v = -np.sin(angle) * dx + np.cos(angle) * dy
        if domain == "squares":
            r = np.maximum(np.abs(u) / a, np.abs(v) / b)
        else:
            r = np.sqrt((u / a) ** 2 + (v / (b * (1.6 if domain == "dark_cells" else 1.0))) ** 2)
        inside = r < 1.0
        grown = r < 1.35
        if (labels[grown] > 0).any():
            continue
        placed += 1
        labels[inside] = placed
        if domain == "rings":
            field += np.exp(-(((r - 0.85) / 0.12) ** 2)) * rng.uniform(0.7, 1.0)
            field += 0.15 * inside
        else:
            field += inside * rng.uniform(0.7, 1.0)
    if domain == "dark_cells":
        image = 0.8 + 0.12 * _texture(rng, shape, 3) - 0.6 * field
    elif domain == "rings":
        image = 0.15 + 0.05 * _texture(rng, shape, 2) + 0.7 * field
    else:
        stripes = 0.25 + 0.15 * np.sin(xx / 3.0 + yy / 7.0)
        image = stripes + 0.5 * field
    image = image + rng.normal(0, 0.03, shape)
    return (np.clip(image, 0, 1.2) * 50000).astype(np.uint16), labels


def domain_set(domain: str, count: int, seed: int = 0, shape=(192, 192)):
    """``count`` (images, labels) lists of one domain."""
    pairs = [domain_image(domain, seed * 1000 + i, shape) for i in range(count)]
    return [p[0] for p in pairs], [p[1] for p in pairs]
