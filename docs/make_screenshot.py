"""Make docs/screenshot.png: napari with the interactive SAM widget on the sample image.

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_screenshot.py [MODEL]

MODEL is anything ``load_model`` reads.  Without it the demo model shipped with the
package (``demo_nuclei``, trained on synthetic nuclei by ``scripts/train_demo_model.py``)
is used, because no real weights can be downloaded where the screenshot is made and
random weights give noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from napari_sam_keras.runtime.backend import import_ml_stack

OUT = Path(__file__).with_name("screenshot.png")


def close_toasts(viewer) -> None:
    """Close napari's notification pop-ups (e.g. a Qt binding's deprecation notice)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def main(model: str) -> None:
    import_ml_stack()
    import napari

    from napari_sam_keras.sample_data import sample_image

    viewer = napari.Viewer(title="napari-sam-keras")
    viewer.window.resize(1360, 880)
    viewer.add_image(sample_image(), name="cells")
    _dock, widget = viewer.window.add_plugin_dock_widget(
        "napari-sam-keras", "Interactive segmentation"
    )
    widget.model.value = model
    # three objects from boxes (one per rectangle, one batch) ...
    widget.shapes.value.add_rectangles(
        [[[4, 1], [59, 51]], [[167, 0], [225, 46]], [[182, 114], [229, 161]]]
    )
    labels = widget.run()
    # ... and one from a click
    widget.points.value.add([[194, 215]])
    widget.run()
    # the next object in the live preview (cyan outline): a box, a positive and a negative point
    widget.shapes.value.add_rectangles([[[212, 165], [254, 212]]])
    widget.points.value.add([[232, 190]])
    widget.point_type.value = "negative"
    widget.points.value.add([[251, 209]])
    widget.live.value = True
    widget.wait()
    labels.opacity = 0.55
    viewer.layers.selection.active = widget.points.value
    viewer.reset_view()
    save_screenshot(viewer, OUT)
    viewer.close()


def save_screenshot(viewer, out: Path) -> None:
    """The whole window (toasts closed) as a PNG, quantized when large."""
    import napari
    from PIL import Image

    app = napari.qt.get_qapp()
    for _ in range(10):
        app.processEvents()
    close_toasts(viewer)
    for _ in range(10):
        app.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    picture = Image.fromarray(np.asarray(shot)[..., :3])
    picture.save(out, optimize=True)
    if out.stat().st_size > 280_000:  # keep the README light; octree keeps small colour spots
        picture.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    print(f"wrote {out} {picture.size}, {out.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_nuclei")
