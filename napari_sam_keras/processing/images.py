"""Turning a microscopy image into SAM's input, exactly as the official code does."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ..errors import ImageError

#: Pixels per strip when converting or resizing a large image piece by piece.
STRIP_PIXELS = 1 << 20


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size after resizing so that the longest side is ``long_side`` (official rounding)."""
    scale = long_side * 1.0 / max(height, width)
    new = int(height * scale + 0.5), int(width * scale + 0.5)
    if min(new) < 1:
        shortest = math.ceil(max(height, width) / (2 * long_side))
        raise ImageError(
            f"The image is {height} x {width} pixels: resized so that its longest side is "
            f"{long_side}, its short side would be 0 pixels. At this length the short side "
            f"must be at least {shortest} pixels; crop or pad the image."
        )
    return new


def _channels(image: np.ndarray) -> tuple[list[np.ndarray], bool]:
    """The image's channels as 2D views (no copies), and whether it was grayscale."""
    image = np.asarray(image)
    if not (
        image.dtype == bool
        or np.issubdtype(image.dtype, np.integer)
        or np.issubdtype(image.dtype, np.floating)
    ):
        raise ImageError(f"Unsupported image dtype {image.dtype}; expected integers or floats.")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        channels, gray = [image], True
    elif image.ndim == 3 and image.shape[-1] in (3, 4):
        channels, gray = [image[..., c] for c in range(3)], False
    else:
        raise ImageError(
            f"Expected a 2D grayscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4) image, got shape "
            f"{tuple(np.shape(image))}. For a stack, pass one 2D slice at a time."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"The image is empty (shape {image.shape}).")
    return channels, gray


def _intensity_map(
    channels: list[np.ndarray], contrast_limits: tuple[float, float] | None
) -> tuple[float, float] | None:
    """(low, scale) of the linear map to 0..255, or None where the data is used as it is."""
    dtype = channels[0].dtype
    extremes = None
    if np.issubdtype(dtype, np.floating):
        # min/max are NaN or infinite exactly when some value is; no full-size mask is made
        extremes = [float(f(c)) for c in channels for f in (np.min, np.max)]
        if not all(np.isfinite(extremes)):
            raise ImageError("The image contains NaN or infinite values; fill or mask them first.")
    if contrast_limits is not None:
        try:
            low, high = (float(v) for v in contrast_limits)
        except (TypeError, ValueError) as err:
            raise ImageError(
                f"contrast_limits must be two numbers (low, high), got {contrast_limits!r}."
            ) from err
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ImageError(f"Contrast limits must be finite numbers, got {contrast_limits}.")
        if not low < high:
            raise ImageError(
                f"contrast_limits {contrast_limits} are reversed or equal: low must be below high."
            )
    elif dtype in (np.uint8, np.bool_):
        return None
    else:
        if extremes is None:
            extremes = [float(f(c)) for c in channels for f in (np.min, np.max)]
        low, high = min(extremes), max(extremes)
    return low, (255.0 / (high - low) if high > low else 0.0)


def _to_uint8(block: np.ndarray, mapping: tuple[float, float] | None) -> np.ndarray:
    if block.dtype == np.bool_:
        block = block.astype(np.uint8) * 255
    if mapping is None:
        return np.ascontiguousarray(block, dtype=np.uint8)
    low, scale = mapping
    scaled = (block.astype(np.float64) - low) * scale
    return np.clip(np.round(scaled, out=scaled), 0, 255, out=scaled).astype(np.uint8)


def _strip_rows(width: int) -> int:
    return max(1, STRIP_PIXELS // max(1, width))


def to_rgb_uint8(
    image: np.ndarray, contrast_limits: tuple[float, float] | None = None
) -> np.ndarray:
    """Convert a 2D grayscale, RGB or RGBA image of any numeric dtype to RGB uint8.

    uint8 data is used as it is unless ``contrast_limits`` is given.  Any other
    dtype is mapped linearly from ``contrast_limits`` (default: the image's own
    min and max) to 0..255 and clipped, like napari's display.  The work is
    done in strips, so no full-size float copy of the image is made.
    """
    channels, _ = _channels(image)
    mapping = _intensity_map(channels, contrast_limits)
    h, w = channels[0].shape
    out = np.empty((h, w, 3), np.uint8)
    step = _strip_rows(w)
    for c in range(3):
        channel = channels[min(c, len(channels) - 1)]
        for top in range(0, h, step):
            out[top : top + step, :, c] = _to_uint8(channel[top : top + step], mapping)
    return out


def resized_rgb_uint8(
    image: np.ndarray, long_side: int, contrast_limits: tuple[float, float] | None = None
) -> np.ndarray:
    """``resize_longest_side(to_rgb_uint8(image, contrast_limits), long_side)``, in less memory.

    The result is identical, but no full-size RGB or float copy is made: one
    channel at a time is converted to uint8 (a strip of rows at a time) and
    resized by PIL, which resamples each channel of an RGB image on its own.
    Beyond the resized image, memory is one byte per pixel of the input
    (whatever its dtype), plus PIL's intermediate.
    """
    channels, gray = _channels(image)
    mapping = _intensity_map(channels, contrast_limits)
    h, w = channels[0].shape
    new_h, new_w = preprocess_shape(h, w, long_side)
    step = _strip_rows(w)
    out = np.empty((new_h, new_w, 3), np.uint8)
    for c, channel in enumerate(channels):
        plane = np.empty((h, w), np.uint8)
        for top in range(0, h, step):
            plane[top : top + step] = _to_uint8(channel[top : top + step], mapping)
        out[..., c] = np.asarray(Image.fromarray(plane).resize((new_w, new_h), Image.BILINEAR))
        del plane
    if gray:
        out[..., 1] = out[..., 0]
        out[..., 2] = out[..., 0]
    return out


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Bilinear resize of an RGB uint8 image so its longest side is ``long_side`` (PIL, as official)."""
    h, w = preprocess_shape(image.shape[0], image.shape[1], long_side)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def pad_to_model_input(resized: np.ndarray, image_size: int, pixel_mean) -> np.ndarray:
    """Pad a resized RGB image to ``image_size`` square with the pixel mean: (1, S, S, 3) float32.

    keras-cv's backbone normalises inside itself, so padding with the mean
    reproduces the official normalise-then-zero-pad.
    """
    out = np.empty((1, image_size, image_size, 3), np.float32)
    out[...] = np.asarray(pixel_mean, np.float32)
    out[0, : resized.shape[0], : resized.shape[1]] = resized
    return out


def model_input(image_rgb: np.ndarray, image_size: int, pixel_mean) -> np.ndarray:
    """Resize, then pad to ``image_size`` square with the pixel mean.

    keras-cv's backbone normalises inside itself, so padding with the mean
    reproduces the official normalise-then-zero-pad.  Returns (1, S, S, 3)
    float32 in 0..255 units.
    """
    return pad_to_model_input(resize_longest_side(image_rgb, image_size), image_size, pixel_mean)
