"""Make docs/screenshot-3d.png: nuclei segmented in 3D with one click each, shown in 3D.

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_screenshot_3d.py [MODEL]

On the 3D sample stack, one click on the middle slice of each nucleus that
touches no other, then **Segment in 3D** (what Shift+S does); the viewer is
then switched to 3D.  MODEL is anything ``load_model`` reads; without it the
demo model shipped with the package (``demo_nuclei``, synthetic nuclei only)
is used, because no real weights can be downloaded where the picture is made.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from napari_sam_keras.runtime.backend import import_ml_stack

OUT = Path(__file__).with_name("screenshot-3d.png")


def clicks(truth: np.ndarray) -> list[tuple[int, float, float]]:
    """(z, row, column) in the middle of each isolated nucleus' widest slice."""
    from scipy import ndimage

    from napari_sam_keras.processing.mask_prompts import interior_point

    near = np.ones((3, 5, 5), bool)
    out = []
    for i in np.unique(truth[truth > 0]):
        mask = truth == i
        if (ndimage.binary_dilation(mask, near) & (truth > 0) & ~mask).any():
            continue  # touching nuclei show no edge between them: the demo model merges them
        z = int(np.argmax(mask.sum(axis=(1, 2))))
        x, y = interior_point(mask[z])
        out.append((z, float(y), float(x)))
    return out


def main(model: str) -> None:
    import_ml_stack()
    import napari
    from PIL import Image

    from napari_sam_keras.sample_data import sample_stack

    stack, truth = sample_stack(with_labels=True)
    viewer = napari.Viewer(title="napari-sam-keras")
    viewer.window.resize(1360, 880)
    viewer.add_image(stack, name="stack", scale=(3, 1, 1), colormap="gray")
    viewer.dims.axis_labels = ("z", "y", "x")
    _dock, widget = viewer.window.add_plugin_dock_widget(
        "napari-sam-keras", "Interactive segmentation"
    )
    widget.model.value = model
    labels = None
    for z, row, col in clicks(truth):
        viewer.dims.set_point(0, 3 * z)  # world z (scale 3) -> slice z
        viewer.dims.last_used = 0
        widget.points.value.add([z, row, col])
        labels = widget.segment_3d() or labels
        print(widget.status.value)
    if labels is None:
        raise SystemExit(f"nothing was segmented: {widget.status.value}")
    status = widget.status.value
    viewer.dims.ndisplay = 3
    viewer.layers["stack"].opacity = 0.6
    viewer.layers["stack"].rendering = "mip"
    labels.rendering = "iso_categorical"
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.angles = (-10, 30, 150)
    camera.zoom = 3.4
    viewer.layers.selection.active = labels
    app = napari.qt.get_qapp()
    from make_screenshot import close_toasts

    for _ in range(10):
        app.processEvents()
    close_toasts(viewer)
    widget.status.show(status)
    for _ in range(10):
        app.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    picture = Image.fromarray(np.asarray(shot)[..., :3])
    picture.save(OUT, optimize=True)
    if OUT.stat().st_size > 280_000:  # keep the README light
        picture.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(OUT, optimize=True)
    print(f"wrote {OUT} {picture.size}, {OUT.stat().st_size // 1024} KiB")
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_nuclei")
