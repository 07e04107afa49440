"""Segment Anything (SAM) for microscopists, on multi-backend Keras 3.

The headless core (no Qt, no napari)::

    from napari_sam_keras import load_model, SAMPredictor
    predictor = SAMPredictor(load_model("sam_vit_b_01ec64.pth"))
    predictor.set_image(image)
    masks, scores, low_res = predictor.predict(point_coords=[[x, y]], point_labels=[1])

Importing this package does not import Keras; the backend is chosen at the
first use (``NAPARI_SAM_KERAS_BACKEND`` or ``KERAS_BACKEND``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": ".model.loading",
    "build_sam": ".model.network",
    "SAMNetwork": ".model.network",
    "SAMConfig": ".model.config",
    "SAMPredictor": ".segmentation.predictor",
    "TiledSAMPredictor": ".segmentation.tiled_predictor",
    "SAMAutomaticMaskGenerator": ".segmentation.automatic_mask_generator",
    "InstanceSegmenter": ".segmentation.instance_segmenter",
    "masks_to_labels": ".segmentation.labels",
    "segment_batch": ".segmentation.batch",
    "open_axis_image": ".files.axis_readers",
    "open_planes": ".files.axis_readers",
    "AxisImage": ".files.image_axes",
    "ImageEmbedding": ".model.embedding",
    "EmbeddingCache": ".model.embedding",
    "EmbeddingStore": ".model.embedding_store",
    "precompute_embeddings": ".segmentation.precompute",
    "import_micro_sam_embeddings": ".segmentation.micro_sam_embeddings",
    "export_micro_sam_embeddings": ".segmentation.micro_sam_embeddings",
    "TileGrid": ".segmentation.tiling",
    "EmbeddingStoreError": ".errors",
    "EmbeddingStoreMismatch": ".errors",
    "CorruptEmbeddingError": ".errors",
    "segment_volume": ".segmentation.volume",
    "track_object": ".segmentation.tracking",
    "link_slices": ".segmentation.volume_linking",
    "segment_volume_automatic": ".segmentation.volume_linking",
    "load_concept_model": ".model.sam3_loading",
    "ConceptModel": ".model.sam3_loading",
    "ConceptSegmenter": ".segmentation.concept_segmenter",
    "ConceptResult": ".segmentation.concept_segmenter",
    "finetune": ".training.finetune",
    "FineTuneResult": ".training.finetune",
    "save_model": ".model.model_folder",
    "export_micro_sam": ".model.micro_sam_export",
    "evaluate_prompts": ".training.evaluation",
    "evaluate_instances": ".training.evaluation",
    "TrainingDataError": ".errors",
    "TrainingSettingsError": ".errors",
    "SAMError": ".errors",
    "ImageError": ".errors",
    "EmbeddingError": ".errors",
    "PromptError": ".errors",
    "PromptsFileError": ".errors",
    "ModelLoadError": ".errors",
    "NotAModelError": ".errors",
    "OperationCancelled": ".errors",
    "BackendError": ".errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .errors import (
        BackendError,
        CorruptEmbeddingError,
        EmbeddingError,
        EmbeddingStoreError,
        EmbeddingStoreMismatch,
        ImageError,
        ModelLoadError,
        NotAModelError,
        OperationCancelled,
        PromptError,
        PromptsFileError,
        SAMError,
        TrainingDataError,
        TrainingSettingsError,
    )
    from .files.axis_readers import open_axis_image, open_planes
    from .files.image_axes import AxisImage
    from .model.config import SAMConfig
    from .model.embedding import EmbeddingCache, ImageEmbedding
    from .model.embedding_store import EmbeddingStore
    from .model.loading import load_model
    from .model.micro_sam_export import export_micro_sam
    from .model.model_folder import save_model
    from .model.network import SAMNetwork, build_sam
    from .model.sam3_loading import ConceptModel, load_concept_model
    from .segmentation.automatic_mask_generator import SAMAutomaticMaskGenerator
    from .segmentation.batch import segment_batch
    from .segmentation.concept_segmenter import ConceptResult, ConceptSegmenter
    from .segmentation.instance_segmenter import InstanceSegmenter
    from .segmentation.labels import masks_to_labels
    from .segmentation.micro_sam_embeddings import (
        export_micro_sam_embeddings,
        import_micro_sam_embeddings,
    )
    from .segmentation.precompute import precompute_embeddings
    from .segmentation.predictor import SAMPredictor
    from .segmentation.tiled_predictor import TiledSAMPredictor
    from .segmentation.tiling import TileGrid
    from .segmentation.tracking import track_object
    from .segmentation.volume import segment_volume
    from .segmentation.volume_linking import link_slices, segment_volume_automatic
    from .training.evaluation import evaluate_instances, evaluate_prompts
    from .training.finetune import FineTuneResult, finetune


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
