"""int8 image encoders: the encoder's Dense kernels quantized with Keras' own quantization.

:func:`quantize_encoder` calls Keras 3's ``Model.quantize("int8")`` on the image
encoder (SAM's ViT or MobileSAM's TinyViT) for its ``Dense`` layers only: the
attention projections and the MLPs, which hold nearly all of the encoder's
weights and compute.  Each kernel becomes int8 with one float scale per output
channel (Keras' ``AbsMaxQuantizer``); at run time Keras quantizes each token's
inputs to int8 likewise and multiplies int8 by int8.  The convolutions (patch
embedding, neck, TinyViT's MBConv), the layer norms, the prompt encoder and the
mask decoder stay float32.

Whether it pays off, and how far the masks move, is measured by
``benchmarks/quantize.py``; see the "int8 encoders" section of docs/models.md.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ModelLoadError

#: The values ``load_model(..., quantize=...)``, ``--quantize`` and the widget accept
#: (``None`` / ``"none"``: float32, the default).
QUANTIZE_MODES = ("int8",)

#: Mean IoU of the best mask, int8 against float32 over a grid of point prompts, below
#: which the quantized encoder is not good enough (issue 25).
MIN_AGREEMENT = 0.98


def check_quantize(quantize: Any) -> str | None:
    """``quantize`` as the mode to apply: ``None`` (float32) or ``"int8"``.

    ``None``, ``""`` and ``"none"`` mean no quantization.

    Raises:
        ModelLoadError: any other value, before any model is read.
    """
    if quantize is None:
        return None
    if isinstance(quantize, str):
        text = quantize.strip().lower()
        if text in ("", "none", "float32"):
            return None
        if text in QUANTIZE_MODES:
            return text
    raise ModelLoadError(
        f"Unknown quantization {quantize!r}: use 'int8' (the image encoder's weights in int8) "
        "or None (float32)."
    )


def _is_dense(layer: Any) -> bool:
    # Keras quantizes a Dense layer of exactly this class (subclasses refuse)
    from ..runtime.backend import import_keras

    return type(layer) is import_keras().layers.Dense


def quantize_encoder(network: Any, mode: str | None = "int8", check: bool = True) -> Any:
    """Quantize ``network``'s image encoder in place (and return the network).

    Only the encoder's ``Dense`` layers are quantized, with
    ``keras.Model.quantize(mode, filters=...)``.  With ``check`` (the default, and
    what :func:`~napari_sam_keras.load_model` does) the quantized encoder must
    agree with the float32 one: the shipped sample image
    (:func:`~napari_sam_keras.sample_data.sample_image`) is embedded before and
    after, and the best masks of a grid of point prompts compared
    (:func:`~.encoder_agreement.embedding_agreement`); a mean IoU below
    :data:`MIN_AGREEMENT` is refused.  The verdict is remembered for the weights'
    key in this process.  The agreement is kept as ``network.agreement``.

    The network's ``key`` gets ``+int8`` appended, so its embeddings are never
    mixed with float32 ones in a cache or store, and its ``quantization`` is
    set.  ``mode=None`` does nothing.  Not public: on a refusal the network is
    left quantized (``load_model`` then drops it).

    Raises:
        ModelLoadError: an unknown mode, a network whose encoder is quantized
            already or uses a mixed-precision dtype policy (Keras quantizes
            float32 layers only here), a backend where Keras cannot do it or
            where it is slower (torch on a CPU: :func:`check_backend`), or an
            agreement below :data:`MIN_AGREEMENT` (the message gives it).
            ``check=False`` skips the backend and agreement checks (benchmarks).
    """
    mode = check_quantize(mode)
    if mode is None:
        return network
    if check:
        check_backend(network.backend)
    if getattr(network, "quantization", None):
        raise ModelLoadError(f"{network.name}'s image encoder is quantized already.")
    backbone = network.model.backbone
    dense = [layer for layer in backbone._flatten_layers() if _is_dense(layer)]
    if not dense:
        raise ModelLoadError(f"{network.name}'s image encoder has no Dense layers to quantize.")
    policies = {layer.dtype_policy.name for layer in dense}
    if policies != {"float32"}:
        raise ModelLoadError(
            f"int8 quantization needs a float32 encoder; this one computes in "
            f"{sorted(policies)} (load it without dtype_policy)."
        )
    verdict_key = (network.key, mode, network.backend)
    known = _VERDICTS.get(verdict_key) if check else None
    image = reference = None
    if check and known is None:
        image = check_image(network.config.image_size)
        reference = network.image_encoder().embed(image)
    try:
        with _one_garbage_collection():
            backbone.quantize(mode, filters=_is_dense)
    except (NotImplementedError, ValueError, TypeError) as err:
        raise ModelLoadError(
            f"Keras could not quantize the image encoder to {mode} on the "
            f"{network.backend} backend: {err}"
        ) from err
    network.quantization = mode
    network.key = f"{network.key}+{mode}"
    with network._compiled_lock:  # compiled float32 runners would keep the old weights
        network._compiled.clear()
    if reference is not None:
        from .encoder_agreement import embedding_agreement

        candidate = network.image_encoder().embed(image)
        known = embedding_agreement(network, reference, candidate)
        _VERDICTS[verdict_key] = known
    network.agreement = known
    if known is not None and known.mean_iou < MIN_AGREEMENT:
        raise ModelLoadError(
            f"The {mode} image encoder of {network.name} does not agree well enough with its "
            f"float32 encoder: mean mask IoU {known.mean_iou:.4f} < {MIN_AGREEMENT} over "
            f"{known.prompts} point prompts on the sample image (embedding drift "
            f"{known.drift:.4f}). Use the model without quantize."
        )
    return network


def check_backend(backend: str) -> None:
    """Refuse int8 where Keras runs it slower than float32: the torch backend on a CPU.

    Keras' torch backend multiplies int8 by int8 with ``torch._int_mm`` on CUDA only; on
    a CPU it casts both to int32 and PyTorch has no fast int32 matrix product (a ViT-B
    qkv-sized product measured 26x slower than float32, the demo model's embedding 1.43x;
    ``benchmarks/quantize.py``).

    Raises:
        ModelLoadError: ``backend`` is torch and no CUDA device is available.
    """
    if backend != "torch":
        return
    import torch

    if not torch.cuda.is_available():
        raise ModelLoadError(
            "int8 encoders are not offered on the torch backend on a CPU: Keras runs its int8 "
            "matrix products there as int32, slower than float32. Use the jax or tensorflow "
            "backend (--backend jax), or float32."
        )


#: Agreements measured in this process, by (weights key, mode, backend).
_VERDICTS: dict[tuple[str, str, str], Any] = {}


def check_image(size: int) -> np.ndarray:
    """The image the agreement is measured on: the shipped sample nuclei, RGB uint8."""
    from ..processing.images import to_rgb_uint8
    from ..sample_data import sample_image

    return to_rgb_uint8(sample_image((size, size), n_cells=max(18, (size // 256) ** 2 * 18)))


def encoder_kernel_dtypes(network: Any) -> dict[str, str]:
    """The dtype of every ``Dense`` kernel of the image encoder, by layer path."""
    from ..runtime.backend import import_keras

    standardize = import_keras().backend.standardize_dtype
    return {
        layer.path: standardize(layer._kernel.dtype)
        for layer in network.model.backbone._flatten_layers()
        if _is_dense(layer)
    }


def require_float_encoder(network: Any, action: str) -> None:
    """Refuse ``action`` (saving, exporting, fine-tuning) for a network with an int8 encoder.

    Its kernels are int8 with per-channel scales, which neither a preset folder nor a
    checkpoint describes, and training would need float kernels: load the model without
    ``quantize`` for that.

    Raises:
        ModelLoadError: the network's image encoder is quantized.
    """
    mode = getattr(network, "quantization", None)
    if mode:
        raise ModelLoadError(
            f"Cannot {action} {network.name}: its image encoder is quantized to {mode}. Load "
            "the model without quantize (float32) for that."
        )


@contextlib.contextmanager
def _one_garbage_collection() -> Iterator[None]:
    """Keras runs ``gc.collect()`` for every float kernel a quantized layer drops; in a
    process with a large heap (a napari session) that is seconds per layer, minutes for an
    encoder.  Collect once, at the end, instead."""
    collect = gc.collect
    gc.collect = lambda *args, **kwargs: 0
    try:
        yield
    finally:
        gc.collect = collect
        gc.collect()
