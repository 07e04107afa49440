"""micro-sam's instance-segmentation decoder: its architecture, weights and cache.

micro-sam stores the decoder of its microscopy models as ``decoder_state``:
torch-em ``UNETR`` state-dict entries that are not under ``encoder.``.  They
fix the architecture (embedding channels, level widths, output maps, the
upsampling variant); :func:`decoder_config_from_state_dict` reads it and
:func:`assign_decoder_state` copies every tensor into
:class:`~napari_sam_keras.keras_layers.instance_decoder.UNETRInstanceDecoder`.

Converted decoders are cached beside the converted SAM weights, keyed by the
content hash of the file they came from.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..runtime.backend import import_keras
from .torch_weights import conv, conv_transpose, same, to_numpy
from .weights_cache import (
    discard_converted,
    model_checksum,
    read_converted,
    store_converted,
)

#: The key micro-sam uses, in its checkpoints, for the decoder's tensors.
DECODER_STATE_KEY = "decoder_state"

_SAMPLER = re.compile(r"decoder\.samplers\.\d+\.")


@dataclass(frozen=True)
class DecoderConfig:
    """Every number that fixes the shape of the instance decoder.

    The defaults are those of micro-sam's released decoders (SAM embedding
    of 256 channels, torch-em's 64 initial features, three output maps,
    bilinear upsampling).
    """

    embed_dim: int = 256
    features: tuple[int, int, int, int] = (512, 256, 128, 64)
    out_channels: int = 3
    conv_transpose: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if len(self.features) != 4:
            raise ValueError("features must list the widths of the four decoder levels")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DecoderConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"Unknown decoder config keys: {sorted(unknown)}")
        return cls(**values)


@dataclass(eq=False)
class InstanceDecoder:
    """A loaded instance decoder: the Keras model, its architecture and identity.

    Attributes:
        model: the built :class:`UNETRInstanceDecoder` holding the weights.
        config: its architecture.
        key: a short identity of the weights (content hash of their file).
    """

    model: Any
    config: DecoderConfig
    key: str = ""
    _compiled: dict = field(default_factory=dict, repr=False)
    _compiled_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def runner(self, jit_compile: bool = True) -> Any:
        """The compiled forward pass (a ``CompiledCall``; built on first use, then shared):
        (B, h, w, embed_dim) embedding -> (B, 16 h, 16 w, out_channels) maps."""
        from ..runtime.compiled_call import CompiledCall

        with self._compiled_lock:
            if jit_compile not in self._compiled:
                self._compiled[jit_compile] = CompiledCall(self.model, jit_compile=jit_compile)
            return self._compiled[jit_compile]


# --- reading decoder state dicts -----------------------------------------------------------


def decoder_state_dict(obj: Any, source: str = "the checkpoint") -> dict[str, np.ndarray]:
    """The decoder's tensors as float32 numpy arrays, from what ``torch.load`` returned.

    Accepts a bare decoder state dict (micro-sam's ``*_decoder.pt``), a dict
    holding it under ``decoder_state``, or a whole torch-em ``UNETR`` state
    dict (the ``encoder.`` entries are dropped).
    """
    if isinstance(obj, Mapping) and DECODER_STATE_KEY in obj:
        obj = obj[DECODER_STATE_KEY]
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{source} holds no decoder state dict (found {type(obj).__name__}).")
    state = {
        k: to_numpy(v)
        for k, v in obj.items()
        if isinstance(k, str) and not k.startswith("encoder.") and hasattr(v, "shape")
    }
    if "out_conv.weight" not in state:
        raise ModelLoadError(
            f"{source} is not a micro-sam instance decoder: it has no 'out_conv.weight' tensor."
        )
    return state


def _shape(sd: Mapping[str, np.ndarray], name: str, ndim: int) -> tuple[int, ...]:
    if name not in sd:
        raise ModelLoadError(f"The decoder checkpoint lacks tensor {name!r}.")
    shape = tuple(int(s) for s in np.shape(sd[name]))
    if len(shape) != ndim:
        raise ModelLoadError(
            f"Decoder tensor {name!r} has shape {shape}; expected a {ndim}-dimensional tensor."
        )
    return shape


def decoder_config_from_state_dict(sd: Mapping[str, np.ndarray]) -> DecoderConfig:
    """Read the decoder's architecture from its tensor shapes.

    Like micro-sam, a checkpoint uses transposed convolutions when a
    ``decoder.samplers.*`` key contains ``.block.``.
    """
    conv_transpose = any(".block." in k for k in sd if _SAMPLER.match(k))
    f0, embed_dim, _, _ = _shape(sd, "base.block.1.weight", 4)
    widths = [f0] + [_shape(sd, f"decoder.blocks.{i}.block.1.weight", 4)[0] for i in range(3)]
    out_channels = _shape(sd, "out_conv.weight", 4)[0]
    return DecoderConfig(
        embed_dim=embed_dim,
        features=tuple(widths),
        out_channels=out_channels,
        conv_transpose=conv_transpose,
    )


# --- torch names of the Keras variables -----------------------------------------------------


def _conv_pairs(layer: Any, prefix: str, transform=conv) -> Iterator[tuple[str, Any, Any]]:
    yield f"{prefix}.weight", layer.kernel, transform
    yield f"{prefix}.bias", layer.bias, same


def _upsampler_pairs(up: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    if up.conv_transpose:
        yield from _conv_pairs(up.conv, f"{prefix}.block", conv_transpose)
    else:
        yield from _conv_pairs(up.conv, f"{prefix}.conv")


def _conv_block_pairs(block: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    # torch-em's ConvBlock: block.0 InstanceNorm, .1 conv, .2 ReLU, .3 InstanceNorm, .4 conv
    yield from _conv_pairs(block.conv1, f"{prefix}.block.1")
    yield from _conv_pairs(block.conv2, f"{prefix}.block.4")


def decoder_weight_pairs(model: Any) -> Iterator[tuple[str, Any, Any]]:
    """(torch-em tensor name, Keras variable, layout transform) for every decoder weight."""
    for i, deconv in enumerate(model.deconvs, start=1):
        p = f"deconv{i}.block"
        yield from _upsampler_pairs(deconv.upsampler, f"{p}.0")
        yield from _conv_pairs(deconv.conv, f"{p}.1.block")
        norm = deconv.norm
        yield f"{p}.2.weight", norm.gamma, same
        yield f"{p}.2.bias", norm.beta, same
        yield f"{p}.2.running_mean", norm.moving_mean, same
        yield f"{p}.2.running_var", norm.moving_variance, same
    yield from _conv_block_pairs(model.base, "base")
    for j, (sampler, block) in enumerate(zip(model.samplers, model.blocks, strict=True)):
        yield from _upsampler_pairs(sampler, f"decoder.samplers.{j}")
        yield from _conv_block_pairs(block, f"decoder.blocks.{j}")
    yield from _upsampler_pairs(model.deconv_out, "deconv_out")
    yield from _conv_block_pairs(model.decoder_head, "decoder_head")
    yield from _conv_pairs(model.out_conv, "out_conv")


def build_instance_decoder(config: DecoderConfig) -> Any:
    """A built :class:`UNETRInstanceDecoder` of ``config`` with random weights."""
    import_keras()
    from ..keras_layers.instance_decoder import UNETRInstanceDecoder

    model = UNETRInstanceDecoder(
        embed_dim=config.embed_dim,
        features=config.features,
        out_channels=config.out_channels,
        conv_transpose=config.conv_transpose,
        name="instance_decoder",
    )
    model.build((None, None, None, config.embed_dim))
    return model


def assign_decoder_state(model: Any, sd: Mapping[str, np.ndarray]) -> None:
    """Copy a decoder state dict into ``model``; a missing or misshapen tensor is an error.

    BatchNorm's ``num_batches_tracked`` counters are not weights and are
    skipped; other tensors the decoder does not use are ignored with a
    warning, as micro-sam ignores them.
    """
    used: set[str] = set()
    pending = []
    for name, variable, transform in decoder_weight_pairs(model):
        if name not in sd:
            raise ModelLoadError(f"The decoder checkpoint lacks tensor {name!r}.")
        value = transform(np.asarray(sd[name], dtype=np.float32))
        if tuple(value.shape) != tuple(variable.shape):
            raise ModelLoadError(
                f"Decoder tensor {name!r} has shape {tuple(np.shape(sd[name]))}; this decoder "
                f"expects {_torch_layout(tuple(variable.shape))}."
            )
        pending.append((variable, value))
        used.add(name)
    for variable, value in pending:
        variable.assign(value)
    unused = sorted(k for k in set(sd) - used if not k.endswith("num_batches_tracked"))
    if unused:
        warnings.warn(
            f"The decoder checkpoint has {len(unused)} tensors the decoder does not use "
            f"(ignored): {unused[:5]}",
            stacklevel=2,
        )


def _torch_layout(keras_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A Keras kernel shape (kh, kw, a, b) in torch's layout (b, a, kh, kw); others as they are."""
    if len(keras_shape) != 4:
        return keras_shape
    kh, kw, a, b = keras_shape
    return (b, a, kh, kw)


def decoder_from_state_dict(sd: Mapping[str, np.ndarray], key: str = "") -> InstanceDecoder:
    """Build the Keras decoder a micro-sam decoder state dict describes, with its weights."""
    config = decoder_config_from_state_dict(sd)
    model = build_instance_decoder(config)
    assign_decoder_state(model, sd)
    return InstanceDecoder(model=model, config=config, key=key)


# --- the converted-decoder cache ------------------------------------------------------------

#: Marker in a cache entry of a checkpoint that holds no decoder.
_NO_DECODER = {"decoder": None}


class _Missing:
    """No cache entry (distinct from "cached: this file has no decoder")."""


MISSING = _Missing()


def load_cached_decoder(content_hash: str) -> InstanceDecoder | None | _Missing:
    """The decoder cached for a file: an :class:`InstanceDecoder`, ``None`` when the file was
    converted and had none, or :data:`MISSING` when nothing (usable) is cached.

    A damaged entry (unreadable, or weights that do not match their checksum) is
    removed and reported as missing, so the file is converted again.
    """
    cached = read_converted(content_hash, kind="decoder")
    if cached is None:
        return MISSING
    weights_path, values, checksum = cached
    if values == _NO_DECODER:
        return None
    try:
        config = DecoderConfig.from_dict(values)
        model = build_instance_decoder(config)
        model.load_weights(weights_path)
        if model_checksum(model) == checksum:
            return InstanceDecoder(model=model, config=config, key="sha256:" + content_hash[:24])
    except Exception:  # a damaged entry: convert again
        pass
    discard_converted(content_hash, kind="decoder")
    return MISSING


def cache_decoder(content_hash: str, decoder: InstanceDecoder | None) -> None:
    """Store a converted decoder (or the fact that the file has none) under the file's hash."""
    if decoder is None:
        store_converted(
            content_hash, _NO_DECODER, "", lambda path: path.write_bytes(b""), "decoder"
        )
        return
    config = json.loads(decoder.config.to_json())
    checksum = model_checksum(decoder.model)
    store_converted(content_hash, config, checksum, decoder.model.save_weights, "decoder")


# --- decoder files ---------------------------------------------------------------------------


def decoder_path_beside(checkpoint: Path) -> Path | None:
    """micro-sam's separate decoder file for a checkpoint, if it lies beside it.

    ``vit_b_lm.pt`` -> ``vit_b_lm_decoder.pt``; micro-sam's download cache
    names them without a suffix (``vit_b_lm`` -> ``vit_b_lm_decoder``).
    """
    checkpoint = Path(checkpoint)
    name = checkpoint.name
    suffix = checkpoint.suffix if checkpoint.suffix in (".pt", ".pth", ".bin") else ""
    stem = name[: len(name) - len(suffix)]
    if stem.endswith("_decoder"):
        return None
    candidate = checkpoint.with_name(f"{stem}_decoder{suffix}")
    return candidate if candidate.is_file() else None


def load_decoder_file(path: Path, content_hash: str, read_file) -> InstanceDecoder:
    """The decoder in ``path``: from the cache, or read with ``read_file(path)``, converted
    and cached.

    ``path`` is micro-sam's ``*_decoder.pt`` (a bare decoder state dict) or a
    checkpoint holding ``decoder_state``.
    """
    cached = load_cached_decoder(content_hash)
    if cached is None:
        raise ModelLoadError(f"{path.name} holds no instance-segmentation decoder.")
    if not isinstance(cached, _Missing):
        return cached
    state = decoder_state_dict(read_file(path), path.name)
    decoder = decoder_from_state_dict(state, key="sha256:" + content_hash[:24])
    cache_decoder(content_hash, decoder)
    return decoder
