"""Click -> preview latency in napari, with the embedding of the slice already cached.

Opens a real viewer (run under ``xvfb-run -a`` on a machine with no screen),
docks the interactive widget in live mode, lets it compute the embedding,
then adds points programmatically and times each until the ``SAM preview``
layer shows the new mask (the Qt event loop keeps running meanwhile).

    xvfb-run -a python benchmarks/gui_click_latency.py                  # random ViT-B
    xvfb-run -a python benchmarks/gui_click_latency.py --model sam_vit_b_01ec64.pth
    xvfb-run -a python benchmarks/gui_click_latency.py --arch vit_t                 # MobileSAM
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from napari_sam_keras.runtime.backend import import_ml_stack

import_ml_stack()  # TensorFlow before napari's OpenGL (see napari_sam_keras.runtime.tensorflow_loading)


def pump_until(condition, timeout: float) -> bool:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        QApplication.processEvents()
        if condition():
            return True
        time.sleep(0.001)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model source (default: a random ViT-B checkpoint)")
    parser.add_argument("--arch", default="vit_b", choices=["vit_t", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--clicks", type=int, default=10)
    args = parser.parse_args()

    import napari

    from napari_sam_keras.sample_data import sample_image

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from benchmark import make_checkpoint

            model = str(Path(tmp) / f"sam_{args.arch}_random.pth")
            make_checkpoint(args.arch, Path(model))
        viewer = napari.Viewer(show=False)
        image = sample_image((768, 1024), n_cells=40)
        viewer.add_image(image, name="cells")
        _, widget = viewer.window.add_plugin_dock_widget(
            "napari-sam-keras", "Interactive segmentation"
        )
        widget["model"].value = model
        t = time.perf_counter()
        widget["live"].value = True  # starts the embedding of the displayed slice
        pump_until(lambda: not widget.busy, 3600)
        print(f"model load + embedding: {time.perf_counter() - t:.1f} s")
        points = widget["points"].value
        rng = np.random.default_rng(0)
        latencies = []
        for i in range(args.clicks):
            before = widget.live_preview.current
            row, col = rng.uniform(100, 660), rng.uniform(100, 920)
            t = time.perf_counter()
            points.add([row, col])
            ok = pump_until(
                lambda b=before: widget.live_preview.current is not b and not widget.busy, 120
            )
            latencies.append(time.perf_counter() - t)
            print(f"click {i}: {latencies[-1] * 1000:.0f} ms{'' if ok else ' (timed out)'}")
        lat = np.array(latencies[1:] or latencies) * 1000
        print(
            f"click -> preview: median {np.median(lat):.0f} ms, max {lat.max():.0f} ms "
            f"over {len(lat)} clicks (the first click, {latencies[0] * 1000:.0f} ms, excluded)"
        )
        viewer.close()


if __name__ == "__main__":
    main()
