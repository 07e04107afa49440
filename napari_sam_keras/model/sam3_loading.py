"""``load_concept_model``: SAM 3 (promptable concept segmentation) through keras-hub.

A SAM 3 is a different network from SAM 1 (text and exemplar-box prompts, a DETR
detector, no point prompts), so it has its own loader and its own
:class:`ConceptModel`; :func:`~napari_sam_keras.load_model` stays for SAM 1.  The
network is keras-hub's ``SAM3PromptableConceptBackbone`` run by our corrected forward
pass (:mod:`napari_sam_keras.keras_layers.sam3_fixes`), the text tokenized by our CLIP
tokenizer (:mod:`napari_sam_keras.model.clip_tokenizer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, ModelLoadError
from .clip_tokenizer import CLIPTokenizer, keras_hub_tokenizer_needs_tensorflow_text
from .network import dtype_policy_scope
from .weights_cache import (
    discard_converted,
    file_sha256,
    model_checksum,
    read_converted,
    store_converted,
)

#: keras-hub's SAM 3 preset (Kaggle; the weights are gated behind Meta's license).
PRESET = "sam3_pcs"
GATED_HINT = (
    "SAM 3's weights are gated: accept Meta's license and download them where you have "
    "internet access, from Hugging Face (https://huggingface.co/facebook/sam3: the folder "
    "with config.json, model.safetensors and tokenizer.json) or Kaggle "
    "(https://www.kaggle.com/models/keras/sam3, the keras-hub preset sam3_pcs), then pass "
    "that folder."
)
#: Normalisation of SAM 3's image input: (x / 255 - 0.5) / 0.5.
PIXEL_MEAN = 127.5
PIXEL_STD = 127.5


@dataclass
class ConceptModel:
    """A loaded SAM 3 concept model: the keras-hub backbone, our forward pass, the tokenizer.

    The forward pass runs as three compiled steps (:meth:`encode_image`,
    :meth:`encode_text`, :meth:`decode`; :meth:`run` chains them): a job checks for
    cancellation between them, the text's features serve every tile, and a new number
    of exemplar boxes recompiles only the decoder, not the ViT.
    """

    backbone: Any
    tokenizer: CLIPTokenizer
    name: str
    key: str
    #: XLA for the forward pass (jax.jit is always used on jax; on tensorflow, XLA compiles
    #: for long, even the tiny test model, but runs faster on a large one).
    jit_compile: bool = True
    _forward: Any = field(default=None, repr=False)
    _compiled: dict = field(default_factory=dict, repr=False)

    @property
    def image_size(self) -> int:
        """The square side (pixels) SAM 3 sees: 1008 for the real model."""
        return int(self.backbone.vision_encoder.image_shape[0])

    @property
    def forward(self):
        """Our corrected forward pass (:class:`~..keras_layers.sam3_fixes.ConceptForward`)."""
        if self._forward is None:
            from ..keras_layers.sam3_fixes import ConceptForward

            self._forward = ConceptForward(self.backbone)
        return self._forward

    def _step(self, name: str):
        if name not in self._compiled:
            from ..runtime.compiled_call import CompiledCall

            layer = getattr(self.forward, name)
            self._compiled[name] = CompiledCall(layer, jit_compile=self.jit_compile)
        return self._compiled[name]

    @property
    def trace_counts(self) -> dict[str, int]:
        """How often each compiled step was traced (compiled), per step name."""
        return {name: step.trace_count for name, step in self._compiled.items()}

    def check_exemplar_boxes(self) -> None:
        """Raise :class:`~napari_sam_keras.errors.BackendError` where exemplar boxes cannot run.

        keras-hub pools an exemplar box's features with ``torchvision.ops.roi_align`` on
        the torch backend (its own Keras ``roi_align`` on jax and tensorflow), and
        torchvision is not one of keras-hub's requirements.  Text prompts need no
        torchvision.
        """
        import keras

        if keras.backend.backend() != "torch":
            return
        try:
            from torchvision.ops import roi_align  # noqa: F401
        except Exception as error:  # absent, or a build that does not match torch
            raise BackendError(
                "SAM 3's exemplar boxes need torchvision on the torch backend (keras-hub "
                f"pools box features with torchvision's roi_align), and it cannot be "
                f"imported here ({type(error).__name__}: {error}). Install the torchvision "
                "that matches your torch, or use the jax or tensorflow backend "
                "(NAPARI_SAM_KERAS_BACKEND=jax); text prompts work without it."
            ) from None

    def encode_image(self, pixel_values: np.ndarray) -> dict[str, Any]:
        """The image's features (the backend's tensors), from (1, S, S, 3) pixels in -1..1.

        Returns once they are computed (jax dispatches asynchronously: a job that checks
        for cancellation after this step must not find the step still running).
        """
        step = self._step("image_encoder")
        return _computed(step.call_tensors(pixel_values), step.backend)

    def encode_text(self, token_ids: np.ndarray, padding_mask: np.ndarray) -> Any:
        """The text's features (a backend tensor) from :attr:`tokenizer`'s ids and mask."""
        step = self._step("text_encoder")
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        return _computed(step.call_tensors(inputs), step.backend)

    def decode(
        self,
        image: dict[str, Any],
        text: Any,
        padding_mask: np.ndarray,
        boxes: np.ndarray,
        box_labels: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """The instances (numpy) for a prompt on an image's features; see ``ConceptForward``."""
        inputs = {
            **image,
            "text": text,
            "padding_mask": padding_mask,
            "boxes": boxes,
            "box_labels": box_labels,
        }
        return self._step("decoder")(inputs)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The whole forward pass, the three steps (numpy in and out)."""
        image = self.encode_image(inputs["pixel_values"])
        text = self.encode_text(inputs["token_ids"], inputs["padding_mask"])
        return self.decode(
            image, text, inputs["padding_mask"], inputs["boxes"], inputs["box_labels"]
        )


def _computed(tensors: Any, backend: str) -> Any:
    """``tensors`` once computed: jax returns before its work is done."""
    if backend == "jax":
        import jax

        jax.block_until_ready(tensors)
    return tensors


def load_concept_model(source: str | os.PathLike, dtype_policy: str | None = None) -> ConceptModel:
    """Load a SAM 3 for :class:`~napari_sam_keras.ConceptSegmenter`.

    ``source`` is one of

    * ``"sam3_pcs"``: keras-hub's preset, downloaded and cached by keras-hub (Kaggle;
      needs the network and accepted license, see :data:`GATED_HINT`);
    * a local keras-hub preset folder (``config.json`` of a
      ``SAM3PromptableConceptBackbone``, ``model.weights.h5``, ``assets/tokenizer/``);
    * a local Hugging Face SAM 3 folder (``config.json`` of model type ``sam3`` or
      ``sam3_video``, ``model.safetensors`` or its shards, ``tokenizer.json``): converted
      once with keras-hub's converter (tensors read with safetensors, no code
      execution) and cached by content hash, so later loads read the cached Keras
      weights.
    """
    text = os.fspath(source)
    with dtype_policy_scope(dtype_policy):
        if text == PRESET and not Path(text).exists():
            return _load_preset(text)
        path = Path(text).expanduser()
        if not path.exists():
            raise ModelLoadError(f"SAM 3 model {text!r} not found. {GATED_HINT}")
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is not a SAM 3 model: give a folder with config.json (a Hugging Face "
                f"SAM 3 or a keras-hub sam3 preset), or {PRESET!r}."
            )
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"Could not read {path / 'config.json'}: {err}") from err
        if not isinstance(config, dict):
            raise ModelLoadError(f"{path / 'config.json'} does not describe a model.")
        if config.get("model_type") in ("sam3", "sam3_video"):
            return _load_hugging_face(path, config)
        if "SAM3PromptableConceptBackbone" in str(config.get("class_name", "")):
            return _load_keras_hub_folder(path)
        raise ModelLoadError(_not_sam3(path, config))


def _not_sam3(path: Path, config: dict) -> str:
    kind = config.get("model_type") or config.get("class_name") or "unknown"
    sam1 = "SegmentAnything" in str(kind) or kind in ("sam", "sam_vision_model")
    what = "a SAM 1 model (points and boxes, no concepts)" if sam1 else f"a {kind!r} model"
    return (
        f"{path} holds {what}, not SAM 3: 'Find all like the examples' needs a SAM 3 "
        "concept model. Use it in the other modes."
    )


def _load_preset(name: str) -> ConceptModel:
    try:
        from keras_hub.src.models.sam3.sam3_presets import backbone_presets
        from keras_hub.src.utils.preset_utils import get_file

        config_path = get_file(backbone_presets[name]["kaggle_handle"], "config.json")
    except Exception as err:  # network, authentication, license: one message for all
        raise ModelLoadError(
            f"Could not download the keras-hub preset {name!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:160] if str(err) else ''}). {GATED_HINT}"
        ) from err
    return _load_keras_hub_folder(Path(config_path).parent, name=name)


def _load_keras_hub_folder(path: Path, name: str | None = None) -> ConceptModel:
    from keras_hub.models import SAM3PromptableConceptBackbone

    tokenizer = CLIPTokenizer.from_folder(path)
    try:
        backbone = SAM3PromptableConceptBackbone.from_preset(str(path))
    except Exception as err:
        raise ModelLoadError(f"Could not load the keras-hub SAM 3 preset in {path}: {err}") from err
    weights = path / "model.weights.h5"
    key = "sha256:" + file_sha256(weights)[:24] if weights.is_file() else f"path:{path}"
    return ConceptModel(backbone=backbone, tokenizer=tokenizer, name=name or str(path), key=key)


# --- Hugging Face checkpoints --------------------------------------------------------------


def _safetensors_files(path: Path) -> list[Path]:
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as err:
            raise ModelLoadError(f"Could not read {index}: {err}") from err
        return [path / n for n in names]
    raise ModelLoadError(
        f"{path} has a SAM 3 config.json but no model.safetensors (only safetensors "
        f"checkpoints are read: they cannot run code). {GATED_HINT}"
    )


class _SafetensorsReader:
    """The ``loader`` keras-hub's ``convert_sam3.convert_weights`` ports tensors from."""

    def __init__(self, files: list[Path], prefix: str) -> None:
        from safetensors import safe_open

        self.prefix = prefix
        self.handles = [safe_open(str(f), framework="np") for f in files]
        self.where = {k: h for h in self.handles for k in h.keys()}
        self.used: set[str] = set()

    def port_weight(self, keras_variable, hf_weight_key: str, hook_fn=None) -> None:
        key = self.prefix + hf_weight_key
        if key not in self.where:
            raise ModelLoadError(f"The SAM 3 checkpoint has no tensor {key!r}.")
        value = self.where[key].get_tensor(key)
        if hook_fn is not None:
            value = hook_fn(value, list(keras_variable.shape))
        if tuple(value.shape) != tuple(keras_variable.shape):
            raise ModelLoadError(
                f"SAM 3 tensor {key} has shape {tuple(value.shape)}, expected "
                f"{tuple(keras_variable.shape)}."
            )
        keras_variable.assign(np.asarray(value, np.float32))
        self.used.add(key)


def _checkpoint_hash(path: Path, files: list[Path]) -> str:
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for f in files:
        digest.update(file_sha256(f).encode())
    return digest.hexdigest()


def _load_hugging_face(path: Path, config: dict) -> ConceptModel:
    tokenizer = CLIPTokenizer.from_folder(path)
    files = _safetensors_files(path)
    digest = _checkpoint_hash(path, files)
    key = "sha256:" + digest[:24]
    cached = read_converted(digest, kind="sam3")
    if cached is not None:
        weights_path, serialized, checksum = cached
        try:
            import keras

            backbone = keras.saving.deserialize_keras_object(serialized)
            backbone.load_weights(weights_path)
            if model_checksum(backbone) == checksum:
                return ConceptModel(backbone, tokenizer, name=str(path), key=key)
            reason = "its weights do not match their checksum"
        except Exception as err:  # a damaged entry of any kind: convert again
            reason = str(err)
        warnings.warn(
            f"The cached conversion of {path} is damaged ({reason}); converting again.",
            stacklevel=3,
        )
        discard_converted(digest, kind="sam3")
    backbone = convert_hugging_face(config, files)
    import keras

    serialized = keras.saving.serialize_keras_object(backbone)
    store_converted(digest, serialized, model_checksum(backbone), backbone.save_weights, "sam3")
    return ConceptModel(backbone, tokenizer, name=str(path), key=key)


def convert_hugging_face(config: dict, files: list[Path]) -> Any:
    """A keras-hub ``SAM3PromptableConceptBackbone`` with a Hugging Face checkpoint's weights."""
    from keras_hub.models import SAM3PromptableConceptBackbone
    from keras_hub.src.utils.transformers import convert_sam3

    if config.get("model_type") == "sam3_video":
        detector, prefix = config.get("detector_config"), "detector_model."
    else:
        detector, prefix = config, ""
    try:
        with warnings.catch_warnings():
            # "Skipping ...pixel_decoder.conv_layers.2": a layer the reference never runs.
            warnings.filterwarnings("ignore", message="Skipping ")
            parts = convert_sam3.convert_backbone_config(
                {"detector_config": detector}, SAM3PromptableConceptBackbone
            )
            backbone = SAM3PromptableConceptBackbone(**parts)
            reader = _SafetensorsReader(files, prefix)
            convert_sam3.convert_weights(backbone, reader, config)
    except ModelLoadError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"This SAM 3 checkpoint has an unexpected layout: {err!r}") from err
    return backbone


def upstream_defects(backbone) -> dict[str, bool]:
    """Which of keras-hub 0.32's SAM 3 defects the installed keras-hub still has.

    Each True is corrected in our code (see
    :mod:`napari_sam_keras.keras_layers.sam3_fixes`); a False means keras-hub fixed it
    and our correction can go.
    """
    from ..keras_layers.sam3_fixes import (
        backbone_ignores_negative_boxes,
        text_encoder_is_bidirectional,
    )

    return {
        "tokenizer_needs_tensorflow_text": keras_hub_tokenizer_needs_tensorflow_text(),
        "text_encoder_bidirectional": text_encoder_is_bidirectional(backbone.text_encoder),
        "negative_boxes_ignored": backbone_ignores_negative_boxes(backbone),
    }
