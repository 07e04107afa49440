"""Synthetic microscopy-like sample images, made with numpy (no download, no napari import).

* :func:`sample_image`: a 2D fluorescence-like field of cell nuclei (uint16).
* :func:`sample_stack`: a 3D stack (z, y, x) of nuclei-like ellipsoids (uint16).
* :func:`sample_timelapse`: a time-lapse (t, y, x) of moving, slowly deforming nuclei (uint16).

Each can also return its ground truth (``with_labels=True``): the int32 label
image of the objects (pixels inside each blob's unit ellipse), used by tests and
by the training script of the demo model (``scripts/train_demo_model.py``).

``make_sample_image``, ``make_sample_stack`` and ``make_sample_timelapse`` return
them as napari layer data tuples; the plugin manifest (``napari.yaml``) offers
them under *File > Open Sample > SAM Keras*.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "make_sample_image",
    "make_sample_stack",
    "make_sample_timelapse",
    "sample_image",
    "sample_stack",
    "sample_timelapse",
]


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


def _render(shape, centres, radii, axes_scale, rng, rotate2d: bool, labels=None) -> np.ndarray:
    """Sum of soft-edged ellipses/ellipsoids with a mild texture, float in 0..1.

    ``labels`` (int array of ``shape``), if given, receives object ``i + 1``
    where blob ``i`` is inside its unit ellipse and no earlier blob is.
    """
    out = np.zeros(shape, dtype=np.float64)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    for i, (c, r) in enumerate(zip(centres, radii, strict=True)):
        semi = r * np.asarray(axes_scale) * (0.8 + 0.4 * rng.random(len(shape)))
        angle = rng.random() * np.pi if rotate2d else None
        brightness = 0.55 + 0.45 * rng.random()
        _draw_blob(out, labels, grids, c, semi, angle, brightness, i + 1)
    return out


def _draw_blob(out, labels, grids, centre, semi, angle, brightness, index) -> None:
    """Add one soft-edged blob to ``out`` (and its unit ellipse to ``labels``)."""
    d = [g - ci for g, ci in zip(grids, centre, strict=True)]
    if angle is not None:
        y, x = d[-2], d[-1]
        d[-2], d[-1] = np.cos(angle) * y - np.sin(angle) * x, np.sin(angle) * y + np.cos(angle) * x
    rr = np.sqrt(sum((di / si) ** 2 for di, si in zip(d, semi, strict=True)))
    body = 1.0 / (1.0 + np.exp((rr - 1.0) * 12.0))
    out += brightness * body * (1.0 - 0.25 * rr**2).clip(0.6, 1.0)
    if labels is not None:
        labels[(rr < 1.0) & (labels == 0)] = index


def _to_uint16(field: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    background = 300.0
    signal = 2600.0 * field
    # smooth illumination gradient plus shot-like and read noise
    ramp = np.linspace(0.9, 1.1, field.shape[-1])[None, :]
    expected = (background + signal) * ramp
    noisy = rng.poisson(np.clip(expected, 0, None) / 4.0) * 4.0 + rng.normal(0, 25, field.shape)
    return np.clip(noisy, 0, 65535).astype(np.uint16)


def sample_image(
    shape: tuple[int, int] = (256, 256), n_cells: int = 18, seed: int = 0, with_labels: bool = False
):
    """A 2D image of nuclei-like blobs on a noisy background, uint16 (rows, columns).

    With ``with_labels``, returns ``(image, labels)``: labels are int32, 0 background.
    """
    rng = np.random.default_rng(seed)
    radius = min(shape) / 14
    centres = _centres(rng, shape, n_cells, radius)
    radii = radius * (0.75 + 0.5 * rng.random(len(centres)))
    labels = np.zeros(shape, np.int32) if with_labels else None
    field = _render(shape, centres, radii, (1.0, 1.3), rng, rotate2d=True, labels=labels)
    image = _to_uint16(field, rng)
    return (image, labels) if with_labels else image


def sample_stack(
    shape: tuple[int, int, int] = (16, 128, 128),
    n_cells: int = 8,
    seed: int = 1,
    with_labels: bool = False,
):
    """A 3D stack (z, y, x) of nuclei-like ellipsoids, uint16; z is sampled coarser.

    With ``with_labels``, returns ``(stack, labels)``: labels are int32 (z, y, x),
    one id per ellipsoid, 0 background.
    """
    rng = np.random.default_rng(seed)
    radius = min(shape[1:]) / 9
    # z axis: the stack is anisotropic, each voxel is ~3x deeper than wide
    centres = _centres(rng, (shape[0] * 3, *shape[1:]), n_cells, radius) / np.array([3, 1, 1])
    radii = radius * (0.75 + 0.5 * rng.random(len(centres)))
    labels = np.zeros(shape, np.int32) if with_labels else None
    field = _render(
        shape, centres, radii, (1.0 / 3.0, 1.0, 1.2), rng, rotate2d=False, labels=labels
    )
    stack = _to_uint16(field, rng)
    return (stack, labels) if with_labels else stack


def sample_timelapse(
    shape: tuple[int, int, int] = (12, 192, 192),
    n_cells: int = 10,
    seed: int = 2,
    with_labels: bool = False,
):
    """A time-lapse (t, y, x) of nuclei that drift, turn and breathe slightly, uint16.

    Each nucleus moves with its own slowly changing velocity (1-3 pixels per
    frame), rotates a little and changes its axes by a few percent per frame;
    nuclei keep clear of each other and of the image edge.  With
    ``with_labels``, returns ``(frames, labels)``: labels (t, y, x) int32, a
    nucleus keeps its id in every frame.
    """
    rng = np.random.default_rng(seed)
    n_frames, height, width = shape
    radius = min(height, width) / 14
    start = _centres(rng, (height, width), n_cells, radius * 1.2)
    count = len(start)
    radii = radius * (0.75 + 0.5 * rng.random(count))
    semis = radii[:, None] * np.array([1.0, 1.3]) * (0.8 + 0.4 * rng.random((count, 2)))
    angles = rng.random(count) * np.pi
    brightness = 0.55 + 0.45 * rng.random(count)
    reach = semis.max(axis=1) + 3
    paths = _paths(rng, start, reach, (height, width), n_frames)
    frames = np.zeros(shape, np.uint16)
    labels = np.zeros(shape, np.int32) if with_labels else None
    grids = np.meshgrid(
        np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij"
    )
    spin = rng.normal(0, 0.05, count)  # radians per frame
    for t in range(n_frames):
        field = np.zeros((height, width))
        breathe = 1.0 + 0.06 * np.sin(0.5 * t + np.arange(count)[:, None] * np.array([1.0, 2.0]))
        for i in range(count):
            _draw_blob(
                field,
                None if labels is None else labels[t],
                grids,
                paths[t, i],
                semis[i] * breathe[i],
                angles[i] + spin[i] * t,
                brightness[i],
                i + 1,
            )
        frames[t] = _to_uint16(field, rng)
    return (frames, labels) if with_labels else frames


def _paths(rng, start, reach, size, n_frames) -> np.ndarray:
    """(t, n, 2) centres: smooth random walks that keep clear of each other and the edge."""
    size = np.asarray(size, float)
    pos = np.array(start, float)
    vel = rng.normal(0, 1, pos.shape)
    vel *= (1.5 + 2.5 * rng.random(len(pos)))[:, None] / np.linalg.norm(vel, axis=1, keepdims=True)
    out = np.zeros((n_frames, *pos.shape))
    for t in range(n_frames):
        out[t] = pos
        turn = rng.normal(0, 0.3, len(pos))
        c, s = np.cos(turn), np.sin(turn)
        vel = np.stack([c * vel[:, 0] - s * vel[:, 1], s * vel[:, 0] + c * vel[:, 1]], axis=1)
        step = pos + vel
        for i in range(len(pos)):
            others = np.delete(np.arange(len(pos)), i)
            gap = np.linalg.norm(step[others] - step[i], axis=1) - reach[others] - reach[i]
            off_edge = (step[i] < reach[i]) | (step[i] > size - reach[i])
            if off_edge.any() or (gap < 2).any():
                vel[i] = -vel[i]  # turn back: the previous position was clear
                step[i] = pos[i]
        pos = step
    return out


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


def make_sample_timelapse():
    """napari sample-data hook: the time-lapse sample as a layer data tuple (axis 0 is time)."""
    return [(sample_timelapse(), {"name": "SAM sample time-lapse", "colormap": "gray"}, "image")]
