"""Make docs/screenshot-concept.png: the automatic widget set up for "find all like this".

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_screenshot_concept.py

The sample image, one exemplar box around a nucleus in a Shapes layer, the text "nucleus",
and the automatic widget switched to SAM 3's mode with the ``sam3_pcs`` preset: what a user
sets up before pressing **Find all like the examples**.  The picture stops there on
purpose: SAM 3's real weights cannot be downloaded where the screenshot is made, and a
random SAM 3 finds random things, so a result would show nothing true about SAM 3.
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_sam_keras.runtime.backend import import_ml_stack

OUT = Path(__file__).with_name("screenshot-concept.png")


def main() -> None:
    import_ml_stack()
    import napari
    from make_screenshot import save_screenshot

    from napari_sam_keras.sample_data import sample_image

    viewer = napari.Viewer(title="napari-sam-keras")
    viewer.window.resize(1360, 880)
    viewer.add_image(sample_image(), name="cells")
    examples = viewer.add_shapes(
        [[[67, 91], [105, 133]]],
        shape_type="rectangle",
        name="examples",
        edge_color="lime",
        edge_width=2,
        face_color="transparent",
        features={"label": ["positive"]},
        text={"string": "{label}", "color": "lime", "anchor": "upper_left", "size": 9},
    )
    _dock, widget = viewer.window.add_plugin_dock_widget(
        "napari-sam-keras", "Automatic segmentation"
    )
    widget.find_all_like.value = True
    widget.model.value = "sam3_pcs"
    widget.reset_choices()
    widget.exemplars.value = examples
    widget.concept_text.value = "nucleus"
    viewer.layers.selection.active = examples
    app = napari.qt.get_qapp()
    for _ in range(10):  # the window at its size before the view is fitted
        app.processEvents()
    viewer.reset_view()
    save_screenshot(viewer, OUT)
    viewer.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
