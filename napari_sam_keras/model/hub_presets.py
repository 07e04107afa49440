"""Named SAM presets (``sam_base_sa1b`` ...) downloaded by keras-cv (kagglehub) or keras-hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .checkpoint_conversion import component_weight_pairs, weight_pairs
from .config import SAMConfig
from .keras_files import build_with_weights
from .network import SAMNetwork, build_keras_cv_sam, config_from_serialized

HUBS = ("keras_cv", "keras_hub")

_OFFLINE_HINT = (
    "Download the weights where you have internet access and pass the local file instead: "
    "an official checkpoint (e.g. sam_vit_b_01ec64.pth), a .keras file or a Keras preset "
    "directory."
)


def load_preset(name: str, hub: str) -> SAMNetwork:
    """The preset ``name`` of ``hub`` (downloaded once, then read from the hub's cache)."""
    try:
        if hub == "keras_cv":
            config_path, weights_path = _download_keras_cv_preset(name)
            config = config_from_serialized(json.loads(Path(config_path).read_text()))
            model = build_with_weights(config, Path(weights_path))
        else:
            model = keras_hub_to_keras_cv(_load_keras_hub(name))
    except ModelLoadError:
        raise
    except Exception as err:  # network, auth, missing package: all end the same for a user
        raise ModelLoadError(
            f"Could not download the {hub} preset {name!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). {_OFFLINE_HINT}"
        ) from err
    return SAMNetwork.from_keras_cv(model, name=name, key=f"preset:{hub}:{name}")


def _download_keras_cv_preset(name: str) -> tuple[str, str]:
    """Fetch (or find in kagglehub's cache) a keras-cv preset's config and weights files."""
    from ..runtime.backend import import_keras_cv

    keras_cv = import_keras_cv()  # the one path that needs keras-cv (and so TensorFlow)
    from keras_cv.src.utils.preset_utils import get_file

    handle = keras_cv.models.SegmentAnythingModel.presets[name]["kaggle_handle"]
    config_path = get_file(handle, "config.json")
    weights_name = json.loads(Path(config_path).read_text()).get("weights") or "model.weights.h5"
    return config_path, get_file(handle, weights_name)


def _load_keras_hub(name: str) -> Any:
    try:
        import keras_hub
    except ImportError as err:
        raise ModelLoadError(
            "keras-hub is not installed: pip install 'napari-sam-keras[hub]', or use hub='keras_cv'."
        ) from err
    return keras_hub.models.SAMImageSegmenter.from_preset(name)


def keras_hub_to_keras_cv(segmenter: Any) -> Any:
    """Copy a keras-hub SAM into a keras-cv one of the same architecture.

    keras-hub's SAM layers keep keras-cv's attribute layout, so the walk that
    names every variable by its official tensor name pairs the two models;
    shapes are checked.
    """
    backbone = segmenter.backbone
    image_encoder = backbone.image_encoder
    encoder = backbone.prompt_encoder
    decoder = backbone.mask_decoder
    config = SAMConfig(
        image_size=int(image_encoder.image_shape[0]),
        patch_size=int(image_encoder.patch_size),
        encoder_embed_dim=int(image_encoder.hidden_size),
        encoder_depth=int(image_encoder.num_layers),
        encoder_num_heads=int(image_encoder.num_heads),
        encoder_global_attn_indexes=tuple(image_encoder.global_attention_layer_indices),
        encoder_mlp_ratio=image_encoder.intermediate_dim / image_encoder.hidden_size,
        window_size=int(image_encoder.window_size),
        prompt_embed_dim=int(encoder.hidden_size),
        mask_in_chans=int(encoder.mask_in_channels),
        decoder_depth=int(decoder.num_layers),
        decoder_num_heads=int(decoder.num_heads),
        decoder_mlp_dim=int(decoder.intermediate_dim),
        num_multimask_outputs=int(decoder.num_multimask_outputs),
        iou_head_depth=int(decoder.iou_head_depth),
        iou_head_hidden_dim=int(decoder.iou_head_hidden_dim),
    )
    model = build_keras_cv_sam(config)
    try:
        theirs = {
            name: var for name, var, _ in component_weight_pairs(image_encoder, encoder, decoder)
        }
    except (AttributeError, ValueError) as err:
        raise ModelLoadError(f"This keras-hub SAM has an unexpected layout: {err!r}") from err
    for name, ours, _ in weight_pairs(model):
        src = theirs.pop(name)
        if tuple(src.shape) != tuple(ours.shape):
            raise ModelLoadError(
                f"keras-hub weight {name} has shape {tuple(src.shape)}, expected {tuple(ours.shape)}."
            )
        ours.assign(src.value)
    return model
