"""Encoder families are declared in one place (model/encoder_families.py): nothing else
switches on an encoder's name, and a new family plugs in as one more entry."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY

from napari_sam_keras import SAMError, SAMPredictor, build_sam
from napari_sam_keras.model import encoder_families as ef
from napari_sam_keras.model.config import SAMConfig

PACKAGE = Path(__file__).resolve().parents[2] / "napari_sam_keras"
#: A comparison with an encoder family's name: a switch the registry should hold.
SWITCH = re.compile(
    r"""(==|!=|\bin)\s*\(?\s*["'](vit|tiny_vit)["']|["'](vit|tiny_vit)["']\s*(==|!=)"""
)


def test_no_module_switches_on_an_encoder_name():
    found = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "encoder_families.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SWITCH.search(line)
    ]
    assert not found, "switch on the encoder's name outside encoder_families.py:\n" + "\n".join(
        found
    )


def test_the_planted_switch_is_found():
    assert SWITCH.search('if config.encoder == "tiny_vit":')
    assert SWITCH.search("if network.config.encoder != 'vit':")
    assert not SWITCH.search('VIT_T = SAMConfig(encoder="tiny_vit")')


def test_unknown_encoder_is_one_clear_error():
    with pytest.raises(SAMError, match="Unknown encoder 'convnext'"):
        SAMConfig(encoder="convnext")


def test_every_family_recognises_what_it_builds():
    for family in ef.encoder_families():
        assert ef.encoder_family(family.name) is family
    tiny = build_sam(TINY, seed=0)
    assert ef.family_of_backbone(tiny.model.backbone).name == "vit"


def test_a_new_family_is_one_entry(monkeypatch):
    """A family declared only in the registry builds, names and runs a network."""
    vit = ef.encoder_family("vit")
    copy = dataclasses.replace(vit, name="vit_copy", label=lambda config: "copy of vit")
    monkeypatch.setitem(ef._FACTORIES, "vit_copy", lambda: copy)
    monkeypatch.setattr(ef, "ENCODER_NAMES", (*ef.ENCODER_NAMES, "vit_copy"))
    monkeypatch.setattr(ef, "_FAMILIES", {})
    network = build_sam(dataclasses.replace(TINY, encoder="vit_copy"), seed=0)
    assert network.name == "random copy of vit"
    reference = build_sam(TINY, seed=0)
    image = np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)
    embeddings = []
    for net in (network, reference):
        predictor = SAMPredictor(net, warm_up=False)
        predictor.set_image(image)
        embeddings.append(predictor.get_image_embedding())
    np.testing.assert_allclose(embeddings[0], embeddings[1], rtol=1e-5, atol=1e-6)


def test_tiny_vit_stage0_values_are_mobile_sams():
    """A checkpoint's stage 0 has no heads/window in its tensors: MobileSAM's, as VIT_T."""
    from napari_sam_keras.model.config import VIT_T
    from napari_sam_keras.model.tiny_vit_conversion import STAGE0_HEADS, STAGE0_WINDOW

    assert (VIT_T.tiny_vit_num_heads[0], VIT_T.tiny_vit_window_sizes[0]) == (
        STAGE0_HEADS,
        STAGE0_WINDOW,
    )
