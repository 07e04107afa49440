"""Start-up: what a fresh process imports, and whether it reuses compiled code.

Each check runs in a process of its own on the jax backend (``sys.modules`` and
jax's compilation cache are per process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")

#: Counts jax's persistent-cache events, loads, predicts and reports what was imported.
CHILD = r"""
import json, sys
import numpy as np
report = {}
import napari_sam_keras as nsk
report["after import"] = sorted(m for m in ("tensorflow", "keras_cv", "keras") if m in sys.modules)
from napari_sam_keras.runtime.backend import import_keras
import_keras()
import jax.monitoring
events = {}
jax.monitoring.register_event_listener(
    lambda name, **kw: events.__setitem__(name, events.get(name, 0) + 1)
)
sources = sys.argv[1:] or ["demo_nuclei"]
for source in sources:
    net = nsk.load_model(source)
predictor = nsk.SAMPredictor(net)
image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
predictor.set_image(image)
masks, scores, _ = predictor.predict(point_coords=np.array([[40, 50]]), point_labels=np.array([1]))
report["mask shape"] = list(masks.shape)
report["after predict"] = sorted(m for m in ("tensorflow", "keras_cv") if m in sys.modules)
from napari_sam_keras.runtime.compilation_cache import compilation_cache_folder
folder = compilation_cache_folder()
report["cache folder"] = str(folder) if folder else None
report["cache entries"] = sorted(p.name for p in folder.iterdir()) if folder else []
report["hits"] = events.get("/jax/compilation_cache/cache_hits", 0)
if __import__("os").environ.get("TRY_PRESET"):
    import kagglehub  # no download in tests: the preset path fails after importing keras-cv

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    kagglehub.model_download = offline
    try:
        nsk.load_model("sam_base_sa1b")
    except nsk.ModelLoadError:
        pass
    report["after preset"] = sorted(m for m in ("tensorflow", "keras_cv") if m in sys.modules)
print("REPORT " + json.dumps(report))
"""


def _run_child(tmp_path: Path, *sources: str, **env_extra: str) -> dict:
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        NAPARI_SAM_KERAS_BACKEND="jax",
        PYTHONPATH=str(REPO),
        NAPARI_SAM_KERAS_CACHE_DIR=str(tmp_path / "cache"),
        KAGGLEHUB_CACHE=str(tmp_path / "kaggle"),
    )
    env.pop("NAPARI_SAM_KERAS_COMPILATION_CACHE", None)
    env.update(env_extra)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *sources],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=REPO,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT ") :])


@needs_jax
def test_jax_paths_import_neither_tensorflow_nor_keras_cv(tmp_path, tiny_checkpoint):
    """import, converting and loading a .pth, the demo model and a predict stay TF-free;
    only a keras-cv preset imports keras-cv (and with it TensorFlow)."""
    report = _run_child(
        tmp_path, str(tiny_checkpoint), str(tiny_checkpoint), "demo_nuclei", TRY_PRESET="1"
    )
    assert report["after import"] == []  # not even Keras
    assert report["mask shape"] == [3, 96, 128]
    assert report["after predict"] == []
    assert report["after preset"] == ["keras_cv", "tensorflow"]


@needs_jax
def test_a_second_process_reuses_the_compilation_cache(tmp_path):
    xla = tmp_path / "xla"
    first = _run_child(tmp_path, NAPARI_SAM_KERAS_COMPILATION_CACHE=str(xla))
    assert first["cache folder"] == str(xla)
    assert first["hits"] == 0
    assert len(first["cache entries"]) >= 2  # at least the image encoder and the prompt path
    second = _run_child(tmp_path, NAPARI_SAM_KERAS_COMPILATION_CACHE=str(xla))
    # every stored compilation is read back instead of compiled again (what gets stored
    # depends on how long a compilation took, so a slow run may store a few more)
    assert second["hits"] >= len(first["cache entries"])
    assert set(first["cache entries"]) <= set(second["cache entries"])


@needs_jax
def test_an_unusable_cache_folder_only_costs_the_caching(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    report = _run_child(tmp_path, NAPARI_SAM_KERAS_COMPILATION_CACHE=str(blocker / "xla"))
    assert report["mask shape"] == [3, 96, 128]
    assert report["cache folder"] is None
    assert report["hits"] == 0  # nothing cached anywhere
    assert blocker.read_text() == "not a folder"


def test_the_compilation_cache_can_be_switched_off(monkeypatch):
    from napari_sam_keras.runtime import compilation_cache

    for value in ("0", "off", "False"):
        monkeypatch.setenv(compilation_cache.ENV_VAR, value)
        assert compilation_cache._enable() is None


def test_loading_draws_no_random_initial_values(monkeypatch):
    """A loaded model's variables are built as zeros and then read from the file (building
    ViT-B with Keras' random initializers cost ~17 s of a cold start); a random model still
    draws them."""
    import threading

    from helpers import TINY

    from napari_sam_keras import build_sam, load_model
    from napari_sam_keras.keras_layers.loading_build import values_from_file
    from napari_sam_keras.runtime.backend import import_keras

    keras = import_keras()
    drawn = []
    original = keras.initializers.GlorotUniform.__call__

    def counting(self, *args, **kwargs):
        drawn.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.initializers.GlorotUniform, "__call__", counting)
    network = load_model("demo_nuclei")
    assert drawn == []
    assert any(abs(w).max() > 0 for w in network.model.get_weights())  # read from the file
    build_sam(TINY, seed=0)
    assert drawn

    def dense_kernel():
        layer = keras.layers.Dense(4)
        layer.build((None, 3))
        return keras.ops.convert_to_numpy(layer.kernel)

    other_thread = []
    with values_from_file():
        assert not dense_kernel().any()
        thread = threading.Thread(target=lambda: other_thread.append(dense_kernel()))
        thread.start()
        thread.join()
    assert other_thread[0].any()  # only this thread's variables start as zeros
    assert dense_kernel().any()
