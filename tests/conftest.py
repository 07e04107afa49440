"""Shared fixtures: tiny random-weight SAMs saved as official checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import TINY, save_official_checkpoint

from napari_sam_keras.runtime.backend import ensure_backend

# Fix the Keras backend (NAPARI_SAM_KERAS_BACKEND / KERAS_BACKEND, else the project's
# default) before any test module imports keras.
ensure_backend()


def pytest_configure(config):
    """Import Keras, and TensorFlow the OpenGL-safe way before any test module (keras_hub)
    imports it.

    The GUI tests open napari viewers (Mesa's OpenGL, with its own LLVM) in the
    same process; see :mod:`napari_sam_keras.runtime.tensorflow_loading`.  The package
    itself imports TensorFlow only on the tensorflow backend; keras-hub imports it always.
    """
    import importlib.util

    from napari_sam_keras.runtime.backend import import_ml_stack
    from napari_sam_keras.runtime.tensorflow_loading import load_tensorflow

    if importlib.util.find_spec("keras_hub") is not None:
        load_tensorflow()
    import_ml_stack()


def pytest_collection_modifyitems(config, items):
    """In the other-backend runs (``-m other_backends``), deselect the tests whose mark's
    ``backends=(...)`` does not list this process's backend."""
    if config.option.markexpr != "other_backends":
        return
    import keras

    backend = keras.backend.backend()
    keep, drop = [], []
    for item in items:
        mark = item.get_closest_marker("other_backends")
        backends = mark.kwargs.get("backends") if mark is not None else None
        (drop if backends and backend not in backends else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep converted-checkpoint caches out of the user's real cache directory."""
    cache = tmp_path_factory.mktemp("sam-cache")
    old = os.environ.get("NAPARI_SAM_KERAS_CACHE_DIR")
    os.environ["NAPARI_SAM_KERAS_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("NAPARI_SAM_KERAS_CACHE_DIR", None)
    else:
        os.environ["NAPARI_SAM_KERAS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_official(tmp_path_factory):
    """(official torch Sam, path of its .pth checkpoint) for the tiny config."""
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    sam = save_official_checkpoint(TINY, path, seed=0)
    return sam, path


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_official) -> Path:
    """Path of a tiny official-format SAM checkpoint (random weights)."""
    return tiny_official[1]


@pytest.fixture(scope="session")
def tiny_network(tiny_checkpoint):
    """The tiny checkpoint loaded through :func:`napari_sam_keras.load_model`."""
    from napari_sam_keras import load_model

    return load_model(tiny_checkpoint)


@pytest.fixture(scope="session")
def tiny_sam3(tmp_path_factory):
    """(folder, transformers Sam3Model, CLIP tokenizer): a tiny random Hugging Face SAM 3."""
    pytest.importorskip("transformers")
    from sam3_oracle import save_tiny_sam3

    folder = tmp_path_factory.mktemp("sam3") / "tiny_sam3"
    model, tokenizer = save_tiny_sam3(folder)
    return folder, model, tokenizer


@pytest.fixture(scope="session")
def tiny_concept_model(tiny_sam3):
    """The tiny SAM 3 loaded through :func:`napari_sam_keras.load_concept_model`.

    The SAM 3 tests all give it the same input shapes (text + two exemplar boxes), so jax
    compiles it once per session; tensorflow traces it without XLA (which compiles even
    the tiny model for longer than the tests run).
    """
    import keras

    from napari_sam_keras import load_concept_model

    model = load_concept_model(tiny_sam3[0])
    model.jit_compile = keras.backend.backend() == "jax"
    if keras.backend.backend() == "torch":  # keras-hub's exemplar boxes need roi_align there
        from sam3_oracle import install_keras_hub_roi_align

        install_keras_hub_roi_align()
    return model
