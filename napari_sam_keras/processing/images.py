"""Turning a microscopy image into SAM's input, exactly as the official code does."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageError


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size after resizing so that the longest side is ``long_side`` (official rounding)."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def to_rgb_uint8(
    image: np.ndarray, contrast_limits: tuple[float, float] | None = None
) -> np.ndarray:
    """Convert a 2D grayscale, RGB or RGBA image of any numeric dtype to RGB uint8.

    uint8 data is used as it is unless ``contrast_limits`` is given.  Any other
    dtype is mapped linearly from ``contrast_limits`` (default: the image's own
    min and max) to 0..255 and clipped, like napari's display.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ImageError(f"Unsupported image dtype {image.dtype}; expected integers or floats.")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ImageError(
            f"Expected a 2D grayscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4) image, got shape "
            f"{tuple(np.shape(image))}. For a stack, pass one 2D slice at a time."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"The image is empty (shape {image.shape}).")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise ImageError("The image contains NaN or infinite values; fill or mask them first.")
    if image.dtype == np.uint8 and contrast_limits is None:
        return np.ascontiguousarray(image)
    if contrast_limits is None:
        low, high = float(image.min()), float(image.max())
    else:
        low, high = (float(v) for v in contrast_limits)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ImageError(f"Contrast limits must be finite numbers, got {contrast_limits}.")
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = (image.astype(np.float64) - low) * scale
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Bilinear resize of an RGB uint8 image so its longest side is ``long_side`` (PIL, as official)."""
    h, w = preprocess_shape(image.shape[0], image.shape[1], long_side)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def model_input(image_rgb: np.ndarray, image_size: int, pixel_mean) -> np.ndarray:
    """Resize, then pad to ``image_size`` square with the pixel mean.

    keras-cv's backbone normalises inside itself, so padding with the mean
    reproduces the official normalise-then-zero-pad.  Returns (1, S, S, 3)
    float32 in 0..255 units.
    """
    resized = resize_longest_side(image_rgb, image_size).astype(np.float32)
    out = np.empty((1, image_size, image_size, 3), np.float32)
    out[...] = np.asarray(pixel_mean, np.float32)
    out[0, : resized.shape[0], : resized.shape[1]] = resized
    return out
