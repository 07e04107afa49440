"""Make docs/screenshot-finetune.png: the Fine-tune widget after a short run on annotations.

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1400x900x24" python docs/make_screenshot_finetune.py

Three synthetic images, each with its objects in a Labels layer (what the Interactive
segmentation widget writes), a few epochs of "decoder" fine-tuning of the shipped demo
model (``demo_nuclei``; no real weights can be downloaded where the screenshot is made),
then the live plot and the before/after table as they are at the end.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from napari_sam_keras.runtime.backend import import_ml_stack

OUT = Path(__file__).with_name("screenshot-finetune.png")


def main(model: str, epochs: int) -> None:
    import_ml_stack()
    import napari
    from make_screenshot import save_screenshot

    from napari_sam_keras.sample_data import sample_image

    viewer = napari.Viewer(title="napari-sam-keras")
    viewer.window.resize(1360, 880)
    for i in range(3):
        image, labels = sample_image(shape=(192, 192), n_cells=9, seed=30 + i, with_labels=True)
        viewer.add_image(image, name=f"cells {i + 1}")
        viewer.add_labels(labels, name=f"cells {i + 1} SAM labels", opacity=0.45)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-sam-keras", "Fine-tune")
    widget.model.value = model
    widget.controls.epochs.value = epochs
    widget.controls.validation.value = 0.34
    widget.training_options = {"objects_per_image": 4, "prompt_iterations": 2}
    with tempfile.TemporaryDirectory() as folder:
        widget.controls.output.value = str(Path(folder) / "demo_nuclei-finetuned")
        outcome = widget.run()
        if outcome is None:
            raise SystemExit(f"fine-tuning failed: {widget.status.details or widget.status.value}")
        widget.controls.output.value = str(Path.home() / "my-cells-model")  # what a user types
        for layer in viewer.layers:
            layer.visible = layer.name.startswith("cells 1")
        viewer.reset_view()
        save_screenshot(viewer, OUT)
    viewer.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_nuclei", 4)
