"""torch-em's UNETR (micro-sam's instance decoder) as a test oracle.

``torch_em``'s package ``__init__`` imports a long chain of optional packages
(elf, bioimage-cpp, ...).  Its model files ``unetr.py``, ``unet.py``,
``vit.py`` and ``util.py`` need only torch and numpy, so they are loaded here
as the submodules of a private package whose search path is
``torch_em/model``, without running any ``__init__``.  Install torch-em with
``pip install --no-deps torch-em``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections import OrderedDict
from pathlib import Path

_PACKAGE = "_torch_em_model_oracle"


def torch_em_available() -> bool:
    """Whether torch and the torch-em sources are installed."""
    return (
        importlib.util.find_spec("torch") is not None
        and importlib.util.find_spec("torch_em") is not None
    )


def unetr_module():
    """``torch_em/model/unetr.py``, imported without ``torch_em/__init__``."""
    name = f"{_PACKAGE}.unetr"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("torch_em")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torch-em is not installed (pip install --no-deps torch-em)")
    model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    package = types.ModuleType(_PACKAGE)
    package.__path__ = [str(model_dir)]
    sys.modules[_PACKAGE] = package
    return importlib.import_module(name)


def randomize_(module, seed: int) -> None:
    """Random weights everywhere, BatchNorm statistics included (their defaults are trivial)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith("running_mean"):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=gen))
            elif tensor.ndim == 1:  # biases and BatchNorm scale/shift
                base = 1.0 if name.endswith(".2.weight") else 0.0
                tensor.copy_(base + 0.2 * torch.randn(tensor.shape, generator=gen))
            else:  # conv kernels: fan-in scaled, like torch's default init
                # (I, O, 2, 2) transposed kernels with stride 2: one tap per output pixel
                fan_in = tensor.shape[0] if _is_transposed_name(name) else tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (1.5 / fan_in) ** 0.5)


def _is_transposed_name(name: str) -> bool:
    """Transposed-conv kernels are named ``....block.weight`` of an upsampler."""
    return name.endswith(".block.weight") and (
        name.startswith("decoder.samplers.")
        or name.startswith("deconv_out.")
        or ".block.0.block." in name
    )


def build_unetr(encoder, conv_transpose: bool = False, seed: int = 0, initial_features: int = 64):
    """torch-em ``UNETR`` set up as micro-sam's ``get_unetr`` does, random weights, eval mode.

    ``encoder`` is a SAM ``ImageEncoderViT`` (its neck fixes the embedding
    channels, its ``img_size`` the output size).  ``initial_features`` other
    than micro-sam's 64 make smaller decoders for quick tests.
    """
    import torch

    unetr = unetr_module().UNETR(
        backbone="sam",
        encoder=encoder,
        out_channels=3,
        use_sam_stats=True,
        final_activation="Sigmoid",
        use_skip_connection=False,
        resize_input=True,
        use_conv_transpose=conv_transpose,
        initial_features=initial_features,
    )
    randomize_(unetr, seed)
    unetr.eval()
    torch.manual_seed(seed)
    return unetr


def decoder_state(unetr) -> OrderedDict:
    """What micro-sam stores as ``decoder_state``: every entry not under ``encoder``."""
    return OrderedDict((k, v) for k, v in unetr.state_dict().items() if not k.startswith("encoder"))


def reference_maps(unetr, embedding_nhwc, input_size, original_size):
    """torch-em's decoder path on a stored embedding (micro-sam's ``DecoderAdapter``).

    ``embedding_nhwc``: (B, h, w, C) numpy, channels last.  Returns (B, 3, H, W)
    numpy maps at ``original_size``.
    """
    import numpy as np
    import torch

    z12 = torch.from_numpy(np.ascontiguousarray(np.transpose(embedding_nhwc, (0, 3, 1, 2))))
    with torch.no_grad():
        out = unetr.decode((z12, None, None), tuple(input_size), tuple(original_size))
    return out.numpy()
