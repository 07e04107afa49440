"""``load_model``: a SAM network from a preset name, a Keras file or an official checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..files.atomic_write import OutputExistsError
from ..runtime.backend import import_keras
from .checkpoint_conversion import (
    assign_state_dict,
    component_weight_pairs,
    config_from_state_dict,
    unwrap_state_dict,
    weight_pairs,
)
from .config import SAMConfig
from .decoder_conversion import (
    MISSING,
    cache_decoder,
    decoder_from_state_dict,
    decoder_path_beside,
    decoder_state_dict,
    load_cached_decoder,
    load_decoder_file,
)
from .model_folder import with_folder_decoder
from .model_source import (  # noqa: F401 (DEMO_MODELS, CHECKPOINT_SUFFIXES: their old home)
    CHECKPOINT_SUFFIXES,
    DEMO_MODELS,
    ModelSource,
    config_beside,
    resolve_model,
)
from .network import SAMNetwork, build_keras_cv_sam, config_from_serialized, dtype_policy_scope
from .quantization import (
    check_backend,
    check_quantize,
    quantize_encoder,
    require_float_encoder,
)
from .weights_cache import (
    discard_converted,
    file_sha256,
    model_checksum,
    read_converted,
    store_converted,
)

HUBS = ("keras_cv", "keras_hub")

_OFFLINE_HINT = (
    "Download the weights where you have internet access and pass the local file instead: "
    "an official checkpoint (e.g. sam_vit_b_01ec64.pth), a .keras file or a Keras preset "
    "directory."
)


def load_model(
    source: str | os.PathLike | ModelSource,
    hub: str = "keras_cv",
    config: SAMConfig | None = None,
    dtype_policy: str | None = None,
    decoder: str | os.PathLike | None = None,
    quantize: str | None = None,
) -> SAMNetwork:
    """Load a SAM network, ready for :class:`~napari_sam_keras.SAMPredictor`.

    ``source`` is one of

    * ``"demo_nuclei"``: the tiny demonstration model shipped with the package,
      trained on synthetic nuclei like the samples (it segments such blobs and
      nothing else; for real data use SAM's weights);
    * a preset name, ``sam_base_sa1b``, ``sam_large_sa1b`` or ``sam_huge_sa1b``,
      downloaded and cached by keras-cv (``hub="keras_cv"``, default) or
      keras-hub (``hub="keras_hub"``);
    * a Keras preset directory (``config.json`` + ``model.weights.h5``, as
      written by :func:`save_preset` or keras-cv's ``save_to_preset``), or a
      model folder of :func:`~napari_sam_keras.save_model` (a preset directory
      that may hold an instance decoder too);
    * a ``.keras`` file of a keras-cv ``SegmentAnythingModel``;
    * a ``.weights.h5`` file with its architecture: ``config`` or a
      ``<name>.json`` beside it (a :class:`SAMConfig` as JSON); without one,
      inside a Keras preset directory, it means that directory;
    * an official PyTorch checkpoint (``.pth``/``.pt``), plain or wrapped in a
      dict; its architecture is read from its tensors.  It is converted once
      (this needs torch, CPU is enough) and cached by content hash, so later
      loads read the cached Keras weights without torch.
    * a micro-sam checkpoint (``vit_b_lm.pt`` and the like, or micro-sam's
      download cache file ``vit_b_lm`` without suffix): a plain SAM state dict
      or ``{"model_state": ..., "decoder_state": ...}``.  Its instance
      decoder, stored inside or as ``<name>_decoder.pt`` beside it, is loaded
      too (converted and cached likewise) and set as ``instance_decoder``.

    What a name means is decided by
    :func:`~napari_sam_keras.model.model_source.resolve_model`, the rule the
    command line, ``segment_batch`` and the widgets share.

    ``decoder`` names a micro-sam decoder file (``*_decoder.pt``) to use
    instead; the network's ``instance_decoder`` is ``None`` without one.

    ``dtype_policy="mixed_bfloat16"`` computes in bfloat16 (weights stay
    float32): faster on GPUs and on CPUs with AVX512-BF16/AMX, at a small cost
    in accuracy.  Off by default.

    ``quantize="int8"`` quantizes the image encoder's weights to int8 with Keras'
    own quantization (:func:`~napari_sam_keras.model.quantization.quantize_encoder`);
    the network's ``key`` then ends in ``+int8``.  See "int8 encoders" in the
    documentation for what it costs in agreement and gains in time.  Off by default.
    """
    if hub not in HUBS:
        raise ModelLoadError(f"Unknown hub {hub!r}; use one of {HUBS}.")
    quantize = check_quantize(quantize)
    if quantize is not None and dtype_policy is not None:
        raise ModelLoadError(
            f"quantize={quantize!r} and dtype_policy={dtype_policy!r} cannot be combined: "
            "the int8 encoder is quantized from float32 weights."
        )
    if quantize is not None:  # before any weights are read
        check_backend(import_keras().backend.backend())
    resolved = resolve_model(source, config)
    from ..keras_layers.loading_build import values_from_file

    # every variable built here is assigned from the file: no random initial values
    with dtype_policy_scope(dtype_policy), values_from_file():
        network = _load_model(resolved, hub, config)
        if decoder is not None:
            network.instance_decoder = _load_decoder(Path(os.fspath(decoder)).expanduser())
        elif network.instance_decoder is None:
            beside = resolved.kind == "checkpoint" and decoder_path_beside(resolved.path)
            if beside:
                network.instance_decoder = _load_decoder(beside)
    return quantize_encoder(network, quantize)


def _load_decoder(path: Path):
    if not path.is_file():
        raise ModelLoadError(f"Decoder file {str(path)!r} not found.")
    return load_decoder_file(path, file_sha256(path), read_torch_file)


def _load_model(resolved: ModelSource, hub: str, config: SAMConfig | None) -> SAMNetwork:
    if resolved.kind == "preset":
        return _load_preset(resolved.name, hub)
    if resolved.kind == "demo":
        network = _load_preset_dir(resolved.path)
        network.name = resolved.name
        return network
    load = {
        "preset_dir": _load_preset_dir,
        "weights_file": lambda path: _load_weights_file(path, config),
        "keras_file": _load_keras_file,
        "checkpoint": _load_official_checkpoint,
    }[resolved.kind]
    return load(resolved.path)


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
    from ..runtime.backend import import_keras_cv

    keras_cv = import_keras_cv()  # the one path that needs keras-cv (and so TensorFlow)
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


def save_preset(network: SAMNetwork, directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save a network as a Keras preset directory that :func:`load_model` reads offline.

    The preset is written into a temporary folder beside ``directory`` and
    renamed when complete, so an interruption never leaves half a preset.  An
    existing ``directory`` is replaced only with ``overwrite=True``.
    """
    from .preset_files import save_to_preset

    require_float_encoder(network, "save")
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise OutputExistsError(
            f"{directory} exists: choose another folder, or pass overwrite=True to replace it."
        )
    if directory.exists() and not directory.is_dir():
        raise OutputExistsError(f"{directory} is a file, not a folder.")
    if not directory.parent.is_dir():
        raise ModelLoadError(f"The folder {directory.parent} does not exist.")
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial", dir=directory.parent)
    )
    try:
        save_to_preset(network.model, tmp)
        if directory.exists():  # overwrite: move the old preset aside, then remove it
            old = Path(
                tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent)
            )
            os.replace(directory, old / directory.name)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
    if not isinstance(serialized, dict):
        raise ModelLoadError(f"{config_file} does not describe a Keras model.")
    weights = path / (serialized.get("weights") or "model.weights.h5")
    if not weights.is_file():
        raise ModelLoadError(f"The preset in {path} has no weights file {weights.name}.")
    model = _build_with_weights(config_from_serialized(serialized), weights)
    network = SAMNetwork.from_keras_cv(model, name=str(path), key=_weights_key(weights))
    return with_folder_decoder(network, path)


def _load_keras_file(path: Path) -> SAMNetwork:
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path.name} is not a valid .keras file (not a zip archive).")
    try:
        with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
            names = set(archive.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise ModelLoadError(f"{path.name} is not a complete .keras file.")
            try:
                serialized = json.loads(archive.read("config.json"))
            except ValueError as err:  # JSON and text decoding errors
                raise ModelLoadError(
                    f"{path.name} is not a valid .keras file: its config.json is not valid "
                    f"JSON ({err})."
                ) from err
            if not isinstance(serialized, dict):
                raise ModelLoadError(f"{path.name} is not a valid .keras file (bad config.json).")
            if "SegmentAnythingModel" not in str(serialized.get("class_name", "")):
                raise ModelLoadError(
                    f"{path.name} holds a {serialized.get('class_name')}, not a SAM model."
                )
            weights = Path(archive.extract("model.weights.h5", tmp))
            model = _build_with_weights(config_from_serialized(serialized), weights)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise ModelLoadError(f"{path.name} is not a valid .keras file (damaged: {err}).") from err
    return SAMNetwork.from_keras_cv(model, name=str(path), key=_weights_key(path))


def _load_weights_file(path: Path, config: SAMConfig | None) -> SAMNetwork:
    if config is None:  # resolve_model made sure that it is there
        config = _read_config(config_beside(path))
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
    return unwrap_state_dict(read_torch_file(path))


def read_torch_file(path: Path) -> Any:
    """``torch.load`` a checkpoint safely (tensors and plain containers only; needs torch)."""
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
            "the file is damaged or not a checkpoint, or it holds more than weights (a "
            "training checkpoint: export it with micro_sam.util.export_custom_sam_model)."
        ) from err
    return obj


def _load_official_checkpoint(path: Path) -> SAMNetwork:
    digest = file_sha256(path)
    key = "sha256:" + digest[:24]
    cached = read_converted(digest)
    decoder = load_cached_decoder(digest) if cached is not None else MISSING
    if cached is not None and decoder is not MISSING:
        weights_path, config_dict, checksum = cached
        try:
            config = SAMConfig.from_dict(config_dict)
            model = _build_with_weights(config, weights_path)
            if model_checksum(model) == checksum:
                return SAMNetwork(
                    model=model, config=config, name=str(path), key=key, instance_decoder=decoder
                )
            reason = "its weights do not match their checksum"
        except (ModelLoadError, TypeError, ValueError) as err:
            reason = str(err)
        warnings.warn(
            f"The cached conversion of {path.name} ({weights_path}) is damaged ({reason}); "
            "converting the checkpoint again.",
            stacklevel=3,
        )
        discard_converted(digest)
    obj = read_torch_file(path)
    state_dict = unwrap_state_dict(obj)
    decoder = None
    if isinstance(obj, dict) and "decoder_state" in obj:
        decoder = decoder_from_state_dict(decoder_state_dict(obj, path.name), key=key)
    config = config_from_state_dict(state_dict)
    model = build_keras_cv_sam(config)
    assign_state_dict(model, state_dict)
    store_converted(digest, config.to_dict(), model_checksum(model), model.save_weights)
    cache_decoder(digest, decoder)
    return SAMNetwork(model=model, config=config, name=str(path), key=key, instance_decoder=decoder)
