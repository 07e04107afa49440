"""The docks fit a laptop screen (issue 24): sections that fold, in a scroll area, the
status line always visible, every control still ``widget.<name>``.

Run under ``xvfb-run -a -s "-screen 0 1366x768x24"`` to see it as a user would; the test
checks the window's own geometry, so it passes on a larger virtual screen too.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # TensorFlow before any OpenGL canvas (see tests/napari/test_napari_widgets.py)

pytestmark = pytest.mark.gui

PLUGIN = "napari-sam-keras"
DOCKS = ("Interactive segmentation", "Automatic segmentation", "Image series")
SCREEN = (1366, 768)


@pytest.fixture(autouse=True)
def _settings_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def settle(rounds: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()


def test_three_docks_fit_a_1366x768_screen_with_the_status_lines_inside(make_napari_viewer):
    from qtpy.QtCore import QPoint

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((3, 64, 64), np.uint8), name="stack")
    widgets = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in DOCKS]
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(*SCREEN)
    settle()
    assert window.minimumSizeHint().height() <= SCREEN[1]
    assert window.height() <= SCREEN[1], window.height()
    assert window.width() <= SCREEN[0], window.width()
    for widget in widgets:
        line = widget.status.native  # the status line (the series' position line)
        assert line.isVisible(), widget
        top_left = line.mapTo(window, QPoint(0, 0))
        bottom = top_left.y() + line.height()
        assert 0 <= top_left.y() and bottom <= window.height(), (widget, top_left.y(), bottom)
        assert line.width() > 50  # not squeezed away


def test_sections_fold_and_are_remembered_and_controls_stay_attributes(make_napari_viewer):
    from napari_sam_keras.napari_adapter.widget_parts.sections import Section

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 40), np.uint8), name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, DOCKS[0])
    # the controls scripts use, wherever their section is
    for name in ("points", "shapes", "multimask", "overwrite", "tile_shape", "refine_id"):
        assert getattr(widget, name).name == name
    assert widget["labels"] is widget.labels and widget.labels.label == "labels (target)"
    advanced = widget.advanced
    assert isinstance(advanced, Section) and advanced.collapsed  # folded by default
    advanced.header.native.click()  # a real click on the title
    assert not advanced.collapsed and not widget.overwrite.native.isHidden()
    widget.overwrite.value = True  # settable either way
    assert widget.overwrite.value is True
    viewer.close()

    viewer = make_napari_viewer()  # a new session: the section opens as the user left it
    _dock, again = viewer.window.add_plugin_dock_widget(PLUGIN, DOCKS[0])
    assert not again.advanced.collapsed


def test_the_3d_section_unfolds_for_a_stack(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 40), np.uint8), name="img")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, DOCKS[0])
    assert widget.controls.volume_section.collapsed
    viewer.add_image(np.zeros((4, 40, 40), np.uint8), name="stack")
    settle()
    assert not widget.controls.volume_section.collapsed
