"""``load_model``: a SAM network from a preset name, a Keras file or an official checkpoint.

What a name means is :mod:`.model_source`'s; each kind is read by its own module:
named presets (:mod:`.hub_presets`), Keras files (:mod:`.keras_files`) and PyTorch
checkpoints (:mod:`.torch_checkpoints`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelLoadError
from ..runtime.backend import import_keras
from .config import SAMConfig
from .decoder_conversion import decoder_path_beside
from .hub_presets import HUBS, load_preset
from .keras_files import load_keras_file, load_preset_dir, load_weights_file
from .model_source import ModelSource, resolve_model
from .network import SAMNetwork, dtype_policy_scope
from .quantization import check_backend, check_quantize, quantize_encoder
from .torch_checkpoints import load_decoder, load_official_checkpoint


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
      written by :func:`~.keras_files.save_preset` or keras-cv's ``save_to_preset``), or a
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
            network.instance_decoder = load_decoder(Path(os.fspath(decoder)).expanduser())
        elif network.instance_decoder is None:
            beside = resolved.kind == "checkpoint" and decoder_path_beside(resolved.path)
            if beside:
                network.instance_decoder = load_decoder(beside)
    return quantize_encoder(network, quantize)


def _load_model(resolved: ModelSource, hub: str, config: SAMConfig | None) -> SAMNetwork:
    if resolved.kind == "preset":
        return load_preset(resolved.name, hub)
    if resolved.kind == "demo":
        network = load_preset_dir(resolved.path)
        network.name = resolved.name
        return network
    load = {
        "preset_dir": load_preset_dir,
        "weights_file": lambda path: load_weights_file(path, config),
        "keras_file": load_keras_file,
        "checkpoint": load_official_checkpoint,
    }[resolved.kind]
    return load(resolved.path)
