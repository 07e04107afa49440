"""``load_model``: a SAM network from a preset name, a Keras file or an official checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .checkpoint_conversion import (
    assign_state_dict,
    component_weight_pairs,
    config_from_state_dict,
    unwrap_state_dict,
    weight_pairs,
)
from .config import PRESETS, SAMConfig
from .network import SAMNetwork, build_keras_cv_sam, config_from_serialized, dtype_policy_scope
from .weights_cache import converted_paths, file_sha256

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin")
HUBS = ("keras_cv", "keras_hub")

_OFFLINE_HINT = (
    "Download the weights where you have internet access and pass the local file instead: "
    "an official checkpoint (e.g. sam_vit_b_01ec64.pth), a .keras file or a Keras preset "
    "directory."
)


def load_model(
    source: str | os.PathLike,
    hub: str = "keras_cv",
    config: SAMConfig | None = None,
    dtype_policy: str | None = None,
) -> SAMNetwork:
    """Load a SAM network, ready for :class:`~napari_sam_keras.SAMPredictor`.

    ``source`` is one of

    * a preset name, ``sam_base_sa1b``, ``sam_large_sa1b`` or ``sam_huge_sa1b``,
      downloaded and cached by keras-cv (``hub="keras_cv"``, default) or
      keras-hub (``hub="keras_hub"``);
    * a Keras preset directory (``config.json`` + ``model.weights.h5``, as
      written by :func:`save_preset` or keras-cv's ``save_to_preset``);
    * a ``.keras`` file of a keras-cv ``SegmentAnythingModel``;
    * a ``.weights.h5`` file with its architecture: ``config`` or a
      ``<name>.json`` beside it (a :class:`SAMConfig` as JSON);
    * an official PyTorch checkpoint (``.pth``/``.pt``), plain or wrapped in a
      dict; its architecture is read from its tensors.  It is converted once
      (this needs torch, CPU is enough) and cached by content hash, so later
      loads read the cached Keras weights without torch.

    ``dtype_policy="mixed_bfloat16"`` computes in bfloat16 (weights stay
    float32): faster on GPUs and on CPUs with AVX512-BF16/AMX, at a small cost
    in accuracy.  Off by default.
    """
    with dtype_policy_scope(dtype_policy):
        return _load_model(source, hub, config)


def _load_model(source: str | os.PathLike, hub: str, config: SAMConfig | None) -> SAMNetwork:
    if hub not in HUBS:
        raise ModelLoadError(f"Unknown hub {hub!r}; use one of {HUBS}.")
    text = os.fspath(source)
    if text in PRESETS and not Path(text).exists():
        return _load_preset(text, hub)
    path = Path(text).expanduser()
    if not path.exists():
        presets = ", ".join(PRESETS)
        raise ModelLoadError(
            f"Model {text!r} not found: it is neither an existing file or directory nor a "
            f"preset name ({presets})."
        )
    if path.is_dir():
        return _load_preset_dir(path)
    name = path.name.lower()
    if name.endswith(".weights.h5"):
        return _load_weights_file(path, config)
    if name.endswith(".keras"):
        return _load_keras_file(path)
    if name.endswith(CHECKPOINT_SUFFIXES):
        return _load_official_checkpoint(path)
    raise ModelLoadError(
        f"Don't know how to load {path.name!r}: expected a .pth/.pt official checkpoint, a "
        ".keras file, a .weights.h5 file with its config, or a Keras preset directory."
    )


# --- presets -----------------------------------------------------------------------------


def _load_preset(name: str, hub: str) -> SAMNetwork:
    try:
        if hub == "keras_cv":
            config_path, weights_path = _download_keras_cv_preset(name)
            config = config_from_serialized(json.loads(Path(config_path).read_text()))
            model = _build_with_weights(config, Path(weights_path))
        else:
            model = _keras_hub_to_keras_cv(_load_keras_hub(name))
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
    from .network import _keras_cv_parts

    keras_cv = _keras_cv_parts()[0]
    from keras_cv.src.utils.preset_utils import get_file

    handle = keras_cv.models.SegmentAnythingModel.presets[name]["kaggle_handle"]
    config_path = get_file(handle, "config.json")
    weights_name = json.loads(Path(config_path).read_text()).get("weights") or "model.weights.h5"
    return config_path, get_file(handle, weights_name)


def _build_with_weights(config: SAMConfig, weights_path: Path) -> Any:
    # keras-cv's SAM does not deserialize under Keras 3.15 (its layers add weights after
    # being built), so the architecture is rebuilt here and the weights loaded into it.
    model = build_keras_cv_sam(config)
    try:
        model.load_weights(weights_path)
    except Exception as err:
        raise ModelLoadError(
            f"Could not read weights from {weights_path.name} for this architecture: {err}"
        ) from err
    return model


def _load_keras_hub(name: str) -> Any:
    try:
        import keras_hub
    except ImportError as err:
        raise ModelLoadError(
            "keras-hub is not installed: pip install 'napari-sam-keras[hub]', or use hub='keras_cv'."
        ) from err
    return keras_hub.models.SAMImageSegmenter.from_preset(name)


def _keras_hub_to_keras_cv(segmenter: Any) -> Any:
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


# --- local Keras files -------------------------------------------------------------------


def save_preset(network: SAMNetwork, directory: str | os.PathLike) -> Path:
    """Save a network as a Keras preset directory that :func:`load_model` reads offline."""
    from keras_cv.src.utils.preset_utils import save_to_preset

    directory = Path(directory)
    save_to_preset(network.model, str(directory))
    return directory


def _load_preset_dir(path: Path) -> SAMNetwork:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"{path} is a directory but not a Keras preset: it has no config.json."
        )
    try:
        serialized = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not read {config_file}: {err}") from err
    weights = path / (serialized.get("weights") or "model.weights.h5")
    if not weights.is_file():
        raise ModelLoadError(f"The preset in {path} has no weights file {weights.name}.")
    model = _build_with_weights(config_from_serialized(serialized), weights)
    return SAMNetwork.from_keras_cv(model, name=str(path), key=_weights_key(weights))


def _load_keras_file(path: Path) -> SAMNetwork:
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path.name} is not a valid .keras file (not a zip archive).")
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
        names = set(archive.namelist())
        if not {"config.json", "model.weights.h5"} <= names:
            raise ModelLoadError(f"{path.name} is not a complete .keras file.")
        serialized = json.loads(archive.read("config.json"))
        if "SegmentAnythingModel" not in str(serialized.get("class_name", "")):
            raise ModelLoadError(
                f"{path.name} holds a {serialized.get('class_name')}, not a SAM model."
            )
        weights = Path(archive.extract("model.weights.h5", tmp))
        model = _build_with_weights(config_from_serialized(serialized), weights)
    return SAMNetwork.from_keras_cv(model, name=str(path), key=_weights_key(path))


def _load_weights_file(path: Path, config: SAMConfig | None) -> SAMNetwork:
    if config is None:
        config_path = path.with_name(path.name[: -len(".weights.h5")] + ".json")
        if not config_path.is_file():
            raise ModelLoadError(
                f"{path.name} holds weights only; give its architecture as load_model(..., "
                f"config=SAMConfig(...)) or put a {config_path.name} beside it."
            )
        config = _read_config(config_path)
    model = _build_with_weights(config, path)
    return SAMNetwork(model=model, config=config, name=str(path), key=_weights_key(path))


def _read_config(path: Path) -> SAMConfig:
    try:
        return SAMConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(f"Could not read the SAM config {path.name}: {err}") from err


def _weights_key(path: Path) -> str:
    return "sha256:" + file_sha256(path)[:24] if path.is_file() else f"path:{path}"


# --- official PyTorch checkpoints --------------------------------------------------------


def read_torch_checkpoint(path: Path) -> dict:
    """Read an official ``.pth`` into a dict of numpy arrays (needs torch)."""
    try:
        import torch
    except ImportError as err:
        raise ModelLoadError(
            f"Converting {path.name} needs PyTorch once (CPU is enough): "
            "pip install 'napari-sam-keras[torch]'. Later loads use the converted cache."
        ) from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"Could not read {path.name} as a PyTorch checkpoint ({type(err).__name__}): "
            "the file is damaged or not a checkpoint."
        ) from err
    return unwrap_state_dict(obj)


def _load_official_checkpoint(path: Path) -> SAMNetwork:
    digest = file_sha256(path)
    weights_path, config_path = converted_paths(digest)
    key = "sha256:" + digest[:24]
    if weights_path.is_file() and config_path.is_file():
        try:
            config = _read_config(config_path)
            model = _build_with_weights(config, weights_path)
            return SAMNetwork(model=model, config=config, name=str(path), key=key)
        except ModelLoadError:  # a damaged cache entry: convert again
            weights_path.unlink(missing_ok=True)
    state_dict = read_torch_checkpoint(path)
    config = config_from_state_dict(state_dict)
    model = build_keras_cv_sam(config)
    assign_state_dict(model, state_dict)
    tmp = weights_path.with_name(weights_path.name + f".{os.getpid()}.tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, weights_path)
    # written whole under a temporary name: another process may be reading the cache
    tmp_config = config_path.with_name(config_path.name + f".{os.getpid()}.tmp")
    tmp_config.write_text(config.to_json())
    os.replace(tmp_config, config_path)
    return SAMNetwork(model=model, config=config, name=str(path), key=key)
