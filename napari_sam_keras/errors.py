"""Exceptions for mistakes a user can make; each carries one clear message."""

from __future__ import annotations


class SAMError(ValueError):
    """Base class of the errors napari-sam-keras raises for bad input."""


class ImageError(SAMError):
    """The image cannot be segmented (shape, dtype, NaN values, ...)."""


class PromptError(SAMError):
    """The prompts are missing, malformed or outside the image."""


class PromptsFileError(PromptError):
    """A prompts file (``batch --prompts``) cannot be used: unreadable, malformed, or a prompt
    that breaks a rule (a box without area, an object of background points only, ...)."""


class EmbeddingError(ImageError):
    """An image embedding (or its file, or an embedding cache setting) cannot be used."""


class ModelLoadError(SAMError):
    """A model source could not be found, read, downloaded or converted."""


class NotAModelError(ModelLoadError, TypeError):
    """Something that is not a model was given where a model is expected."""


class EmbeddingStoreError(SAMError):
    """An embedding store cannot be used (not a store, unreadable, read-only, ...)."""


class EmbeddingStoreMismatch(EmbeddingStoreError):
    """The store was made for other data, another model, another tiling or conversion."""


class CorruptEmbeddingError(EmbeddingStoreError):
    """A stored embedding does not match its checksum (damaged or missing chunk)."""


class TrainingDataError(SAMError):
    """Fine-tuning data cannot be used (shapes, label dtype, no objects, unpaired lists)."""


class TrainingSettingsError(SAMError):
    """A fine-tuning setting is invalid (unknown mode, epochs < 1, a foreign checkpoint)."""


class BackendError(RuntimeError):
    """The requested Keras backend cannot be used in this process."""


class OperationCancelled(Exception):
    """Raised by a progress callback to stop long work; nothing is written."""


__all__ = [
    "BackendError",
    "EmbeddingError",
    "CorruptEmbeddingError",
    "EmbeddingStoreError",
    "EmbeddingStoreMismatch",
    "ImageError",
    "ModelLoadError",
    "NotAModelError",
    "OperationCancelled",
    "PromptError",
    "SAMError",
    "TrainingDataError",
    "TrainingSettingsError",
]
