"""keras-hub's SAM converts to the keras-cv network the predictor runs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY

keras_hub = pytest.importorskip("keras_hub")

from napari_sam_keras import SAMPredictor  # noqa: E402
from napari_sam_keras.model.hub_presets import keras_hub_to_keras_cv  # noqa: E402
from napari_sam_keras.model.network import SAMNetwork  # noqa: E402


@pytest.fixture(scope="module")
def hub_segmenter():
    from keras_hub.layers import SAMMaskDecoder, SAMPromptEncoder
    from keras_hub.models import SAMBackbone, SAMImageSegmenter, ViTDetBackbone

    c = TINY
    backbone = SAMBackbone(
        image_encoder=ViTDetBackbone(
            hidden_size=c.encoder_embed_dim,
            num_layers=c.encoder_depth,
            intermediate_dim=c.encoder_mlp_dim,
            num_heads=c.encoder_num_heads,
            global_attention_layer_indices=list(c.encoder_global_attn_indexes),
            image_shape=(c.image_size, c.image_size, 3),
            num_output_channels=c.prompt_embed_dim,
            window_size=c.window_size,
        ),
        prompt_encoder=SAMPromptEncoder(
            hidden_size=c.prompt_embed_dim,
            image_embedding_size=(c.embedding_size, c.embedding_size),
            input_image_size=(c.image_size, c.image_size),
            mask_in_channels=c.mask_in_chans,
        ),
        mask_decoder=SAMMaskDecoder(
            hidden_size=c.prompt_embed_dim,
            num_layers=c.decoder_depth,
            intermediate_dim=c.decoder_mlp_dim,
            num_heads=c.decoder_num_heads,
            embedding_dim=c.prompt_embed_dim,
            iou_head_hidden_dim=c.iou_head_hidden_dim,
        ),
    )
    segmenter = SAMImageSegmenter(backbone=backbone)
    rng = np.random.default_rng(0)
    for v in segmenter.weights:
        base = 1.0 if "gamma" in v.path else 0.0
        v.assign((base + 0.05 * rng.normal(size=v.shape)).astype("float32"))
    return segmenter


def test_keras_hub_sam_predicts_like_itself(hub_segmenter):
    model = keras_hub_to_keras_cv(hub_segmenter)
    predictor = SAMPredictor(SAMNetwork.from_keras_cv(model, name="hub"))
    size = TINY.image_size
    image = np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)
    predictor.set_image(image)

    hub_features = hub_segmenter.backbone.image_encoder(image[None].astype("float32") / 255.0)
    np.testing.assert_allclose(predictor.embedding_state().features, hub_features, atol=1e-4)

    # keras-hub, like keras-cv, leaves the official pad point to the caller
    point = np.array([[[100.0, 60.0], [0.0, 0.0]]], np.float32)
    outputs = hub_segmenter(
        {
            "images": image[None].astype("float32") / 255.0,
            "points": point,
            "labels": np.array([[1.0, -1.0]], np.float32),
            "boxes": np.zeros((1, 0, 2, 2), np.float32),
            "masks": np.zeros((1, 0, 256, 256, 1), np.float32),
        }
    )
    _, iou, low = predictor.predict(point_coords=[[100.0, 60.0]], point_labels=[1])
    np.testing.assert_allclose(low, np.asarray(outputs["masks"])[0, 1:], atol=1e-3)
    np.testing.assert_allclose(iou, np.asarray(outputs["iou_pred"])[0, 1:], atol=1e-4)
