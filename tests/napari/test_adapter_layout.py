"""The napari adapter's rooms (see docs/architecture.md), and a manifest that names them."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import napari_sam_keras.napari_adapter as adapter

ROOMS = {"session", "layers", "jobs", "background", "widget_parts", "widgets"}


def test_the_adapter_is_made_of_the_documented_rooms():
    root = Path(adapter.__file__).parent
    rooms = {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    assert rooms == ROOMS
    assert [p.name for p in root.glob("*.py")] == ["__init__.py"], "modules belong in a room"


def test_every_python_name_of_the_manifest_exists():
    manifest = Path(adapter.__file__).parents[1] / "napari.yaml"
    names = re.findall(r"python_name:\s*(\S+)", manifest.read_text(encoding="utf-8"))
    assert len(names) >= 9
    for name in names:
        module, attribute = name.split(":")
        assert hasattr(importlib.import_module(module), attribute), name
