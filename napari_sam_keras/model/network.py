"""The SAM network: the project's own Keras ``SegmentAnythingModel`` plus its architecture.

:func:`build_sam` makes one of any size with random weights (tests use tiny
ones); :class:`SAMNetwork` is what :func:`napari_sam_keras.load_model` returns
and what the predictor consumes.  The network is built from
:mod:`napari_sam_keras.keras_layers` (laid out like keras-cv's, whose weight
files it reads and writes), so neither keras-cv nor TensorFlow is imported on
the jax and torch backends.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError

if TYPE_CHECKING:  # pragma: no cover
    from .image_encoder import ImageEncoder
    from .prompt_path import PromptPath
from ..runtime.backend import import_keras
from .config import SAMConfig


def build_sam_model(
    config: SAMConfig, seed: int | None = None, dtype_policy: str | None = None
) -> Any:
    """Build a Keras ``SegmentAnythingModel`` of the given architecture with random weights.

    Its backbone is SAM's ViT (:class:`~napari_sam_keras.keras_layers.vit_det.ViTDetBackbone`),
    or MobileSAM's TinyViT when ``config.encoder`` is ``"tiny_vit"``
    (:func:`napari_sam_keras.keras_layers.tiny_vit.tiny_vit_backbone`), built by the
    config's encoder family (:mod:`napari_sam_keras.model.encoder_families`).  The layout is
    keras-cv's, so keras-cv weight files load into it.

    ``dtype_policy`` (e.g. ``"mixed_bfloat16"``) sets the Keras dtype policy of its layers;
    the default is Keras' global policy (float32).
    """
    with dtype_policy_scope(dtype_policy):
        return _build_sam_model(config, seed)


#: The name of :func:`build_sam_model` when the networks were keras-cv's.
build_keras_cv_sam = build_sam_model


@contextmanager
def dtype_policy_scope(dtype_policy: str | None) -> Iterator[None]:
    """Build layers under a Keras dtype policy (``None``: leave the global one)."""
    if dtype_policy is None:
        yield
        return
    keras = import_keras()
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(dtype_policy)
    except ValueError as err:
        raise ModelLoadError(
            f"Unknown dtype policy {dtype_policy!r}; use e.g. 'float32' or 'mixed_bfloat16'."
        ) from err
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _build_sam_model(config: SAMConfig, seed: int | None) -> Any:
    keras = import_keras()
    from ..keras_layers.sam_mask_decoder import SAMMaskDecoder, TwoWayTransformer
    from ..keras_layers.sam_model import SegmentAnythingModel
    from ..keras_layers.sam_prompt_encoder import SAMPromptEncoder

    if seed is not None:
        keras.utils.set_random_seed(seed)
    from .encoder_families import encoder_family

    backbone = encoder_family(config.encoder).build_backbone(config)
    prompt_encoder = SAMPromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(config.embedding_size, config.embedding_size),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    mask_decoder = SAMMaskDecoder(
        transformer_dim=config.prompt_embed_dim,
        transformer=TwoWayTransformer(
            depth=config.decoder_depth,
            embed_dim=config.prompt_embed_dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
        ),
        num_multimask_outputs=config.num_multimask_outputs,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    model = SegmentAnythingModel(
        backbone=backbone, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder
    )
    # Known here; reading it back through get_config would import TensorFlow (Keras'
    # serialization checks for TensorFlow types whenever TensorFlow is installed).
    model.sam_config = config
    return model


def config_from_keras_cv(model: Any) -> SAMConfig:
    """Read the architecture back from a ``SegmentAnythingModel`` (ours or keras-cv's)."""
    known = getattr(model, "sam_config", None)
    if isinstance(known, SAMConfig):
        return known
    saving = import_keras().saving
    return config_from_serialized(
        {
            "config": {
                "backbone": {"config": model.backbone.get_config()},
                "prompt_encoder": {"config": model.prompt_encoder.get_config()},
                "mask_decoder": saving.serialize_keras_object(model.mask_decoder),
            }
        }
    )


def config_from_serialized(serialized: dict) -> SAMConfig:
    """The architecture from a serialized keras-cv ``SegmentAnythingModel`` (config.json);
    its backbone is keras-cv's ViTDet or our TinyViT."""
    try:
        cfg = serialized["config"]
        backbone = cfg["backbone"]["config"]
        encoder = cfg["prompt_encoder"]["config"]
        decoder = cfg["mask_decoder"]["config"]
        transformer = decoder["transformer"]["config"]
        from .encoder_families import encoder_families

        found = (
            (family.name, fields)
            for family in encoder_families()
            if (fields := family.fields_from_serialized(backbone)) is not None
        )
        name, image_encoder = next(found, (None, None))
        if name is None:
            raise ModelLoadError("The Keras config's image encoder is of no known family.")
        return SAMConfig(
            encoder=name,
            **image_encoder,
            prompt_embed_dim=int(encoder["embed_dim"]),
            mask_in_chans=int(encoder["mask_in_chans"]),
            decoder_depth=int(transformer["depth"]),
            decoder_num_heads=int(transformer["num_heads"]),
            decoder_mlp_dim=int(transformer["mlp_dim"]),
            num_multimask_outputs=int(decoder["num_multimask_outputs"]),
            iou_head_depth=int(decoder["iou_head_depth"]),
            iou_head_hidden_dim=int(decoder["iou_head_hidden_dim"]),
        )
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ModelLoadError(
            f"This Keras config does not describe a keras-cv SegmentAnythingModel ({err!r})."
        ) from err


@dataclass(eq=False)
class SAMNetwork:
    """A loaded SAM network, ready for :class:`~napari_sam_keras.SAMPredictor`.

    Attributes:
        model: the Keras ``SegmentAnythingModel`` holding the weights
            (:mod:`napari_sam_keras.keras_layers.sam_model`, keras-cv's layout).
        config: its architecture.
        name: where it came from (preset name or file path), for messages.
        key: a short identity of the weights, used to key embedding caches.
        instance_decoder: micro-sam's instance-segmentation decoder
            (:class:`~napari_sam_keras.model.decoder_conversion.InstanceDecoder`)
            when the checkpoint came with one, else ``None``.
        generator_defaults: the automatic mask generator's settings this model
            recommends instead of the official defaults (``{"pred_iou_thresh": 0.5,
            ...}``, from its folder's ``metadata.json``; see
            :func:`~napari_sam_keras.segmentation.generator_settings.settings_for_model`).
        quantization: ``"int8"`` when the image encoder's weights are quantized
            (:func:`~napari_sam_keras.model.quantization.quantize_encoder`), else ``None``;
            ``agreement`` is then how well its masks agree with float32 ones
            (:class:`~napari_sam_keras.model.encoder_agreement.EncoderAgreement`).
    """

    model: Any
    config: SAMConfig
    name: str = "random"
    key: str = ""
    instance_decoder: Any = field(default=None, repr=False)
    generator_defaults: dict = field(default_factory=dict, repr=False)
    quantization: str | None = None
    agreement: Any = field(default=None, repr=False)
    _compiled: dict = field(default_factory=dict, repr=False)
    _compiled_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.key:
            self.key = hashlib.sha1(f"{self.name}:{id(self.model)}".encode()).hexdigest()[:16]

    @classmethod
    def from_keras_cv(cls, model: Any, name: str = "keras-cv model", key: str = "") -> SAMNetwork:
        """Wrap an existing ``SegmentAnythingModel`` (ours, laid out like keras-cv's)."""
        return cls(model=model, config=config_from_keras_cv(model), name=name, key=key)

    @property
    def backend(self) -> str:
        return import_keras().backend.backend()

    def image_encoder(self, jit_compile: bool = True) -> ImageEncoder:
        """The compiled image encoder of this network (built on first use, then shared)."""
        from .image_encoder import ImageEncoder

        return self._compiled_part("encoder", jit_compile, lambda: ImageEncoder(self, jit_compile))

    def prompt_path(self, jit_compile: bool = True) -> PromptPath:
        """The compiled prompt encoder + mask decoder (built on first use, then shared)."""
        from .prompt_path import PromptPath

        return self._compiled_part(
            "prompt_path", jit_compile, lambda: PromptPath(self.model, self.config, jit_compile)
        )

    def _compiled_part(self, kind: str, jit_compile: bool, build: Callable[[], Any]) -> Any:
        with self._compiled_lock:
            key = (kind, jit_compile)
            if key not in self._compiled:
                self._compiled[key] = build()
            return self._compiled[key]

    def image_encoder_model(self) -> Any:
        """A Keras model: :func:`~napari_sam_keras.processing.images.pad_to_model_input` batches
        (B, S, S, 3) in 0..255 -> image embeddings (B, e, e, c).

        SAM's ViT runs through :func:`~napari_sam_keras.keras_layers.vit_encoder.backbone_forward`
        (chunked global attention); MobileSAM's TinyViT is the backbone itself.
        """
        from .encoder_families import encoder_family

        family = encoder_family(self.config.encoder)
        return family.image_encoder_model(self.model.backbone, self.config)


def build_sam(
    config: SAMConfig | str = "vit_b", seed: int | None = None, dtype_policy: str | None = None
) -> SAMNetwork:
    """Build a SAM network of any size with random weights.

    ``config`` is a :class:`SAMConfig` or one of ``"vit_t"`` (MobileSAM),
    ``"vit_b"``, ``"vit_l"``, ``"vit_h"``.  Useful for tests and for fine-tuning
    from scratch.
    """
    from .config import ARCHITECTURES

    if isinstance(config, str):
        if config not in ARCHITECTURES:
            raise ModelLoadError(
                f"Unknown architecture {config!r}; use one of {sorted(ARCHITECTURES)}"
            )
        config = ARCHITECTURES[config]
    model = build_sam_model(config, seed=seed, dtype_policy=dtype_policy)
    from .encoder_families import encoder_family

    label = encoder_family(config.encoder).label(config)
    return SAMNetwork(model=model, config=config, name=f"random {label}")
