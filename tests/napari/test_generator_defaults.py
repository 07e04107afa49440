"""The automatic widget's generator controls show ``generator_settings.DEFAULTS``."""

from __future__ import annotations

import pytest

from napari_sam_keras.napari_adapter.automatic_controls import generator_controls
from napari_sam_keras.segmentation.generator_settings import DEFAULTS


def test_the_widget_controls_show_the_defaults(qtbot):
    shown = {control.name: control.value for control in generator_controls()}
    assert len(shown) == 5
    assert shown == {name: pytest.approx(getattr(DEFAULTS, name)) for name in shown}
