"""What each batch mode does to one plane, with its model loaded once per process.

* ``amg``: the automatic mask generator, as ``napari-sam-keras auto``;
* ``ais``: the model's instance decoder and watershed, as ``auto --mode ais``;
* ``concept``: SAM 3's "find all like the examples", as ``auto --mode concept``;
* ``prompts``: each image's points and boxes from a prompts file, as
  ``napari-sam-keras predict`` (one label per object, in the file's order).

Every mode takes the tiling of the single-image commands (``tile_shape``, ``halo``) and
returns the plane's labels (int64, 0 background), numbered from 1.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

#: The batch modes; ``prompts`` is chosen by giving a prompts file.
MODES = ("amg", "ais", "concept", "prompts")

_LOCK = threading.Lock()
_NETWORKS: dict[tuple[str, str | None, str | None, str | None], Any] = {}
_SEGMENTERS: dict[tuple, Any] = {}
#: How many times this process loaded each model (source, backend, decoder, quantization).
_LOADS: dict[tuple[str, str | None, str | None, str | None], int] = {}


def model_key(settings: dict[str, Any], backend: str | None) -> tuple:
    """The per-process key of a run's model: (source, backend, instance decoder file,
    quantization)."""
    return settings["model"], backend, settings.get("decoder"), settings.get("quantize")


def loads(settings: dict[str, Any], backend: str | None) -> int:
    """How many times this process loaded the model of ``settings``."""
    return _LOADS.get(model_key(settings, backend), 0)


def is_loaded(settings: dict[str, Any], backend: str | None) -> bool:
    """Whether the model of ``settings`` is in this process's cache now (a load under
    way does not count)."""
    return model_key(settings, backend) in _NETWORKS


class PlaneSegmenter:
    """One mode's segmenter of 2D planes: :meth:`labels` -> int64 (H, W)."""

    def __init__(self, network: Any, settings: dict[str, Any]) -> None:
        self.network = network
        self.mode = settings["mode"]
        self.options = dict(settings["generator"])
        tiles = settings.get("tiles") or {}
        self.tile_shape = None if tiles.get("tile_shape") is None else tuple(tiles["tile_shape"])
        self.halo = None if tiles.get("halo") is None else tuple(tiles["halo"])
        self._lock = threading.Lock()  # one plane at a time (dask threads share a segmenter)
        tiling = {"tile_shape": self.tile_shape, "halo": self.halo}
        if self.mode == "amg":
            from ..automatic_mask_generator import SAMAutomaticMaskGenerator

            self.worker = SAMAutomaticMaskGenerator(network, **self.options, **tiling)
        elif self.mode == "concept":
            from ..concept_segmenter import ConceptBatchRunner

            self.worker = ConceptBatchRunner(network, **self.options, **tiling)
        elif self.mode == "ais":
            from ..instance_segmenter import InstanceSegmenter
            from ..predictor import SAMPredictor

            # as ``auto --mode ais`` makes it (the decoder is checked here, before any image)
            predictor = SAMPredictor(network, warm_up=False)
            self.worker = InstanceSegmenter(network, predictor=predictor)
        else:
            from ..tiled_predictor import TiledSAMPredictor

            self.worker = TiledSAMPredictor(network)

    def labels(
        self,
        plane: Any,
        contrast_limits: tuple[float, float] | None,
        prompts: list[dict[str, Any]] | None = None,
        progress: Any = None,
    ) -> np.ndarray:
        """The labels of one 2D (H, W) or RGB (H, W, 3) plane (a lazy array when tiled)."""
        from ..labels import masks_to_labels

        shape = tuple(int(s) for s in np.shape(plane)[:2])
        with self._lock:
            if self.mode in ("amg", "concept"):
                found = self.worker.generate(
                    plane, progress=progress, contrast_limits=contrast_limits
                )
                labels = masks_to_labels(found, shape=shape)
            elif self.mode == "ais":
                labels = self.worker.segment(
                    plane,
                    contrast_limits=contrast_limits,
                    tile_shape=self.tile_shape,
                    halo=self.halo,
                    **self.options,
                )
            else:
                from ..prompt_objects import objects_to_labels, predict_objects
                from .prompts_file import prompt_objects

                self.worker.set_image(
                    plane,
                    contrast_limits=contrast_limits,
                    tile_shape=self.tile_shape,
                    halo=self.halo,
                )
                labels = objects_to_labels(
                    predict_objects(self.worker, prompt_objects(prompts or [])), shape
                )
        return np.asarray(labels).astype(np.int64)


def plane_segmenter(
    settings: dict[str, Any], backend: str | None, network: Any = None
) -> PlaneSegmenter:
    """The process's segmenter for these settings, loading the model once per process.

    ``network``: a model loaded by the caller (in-process runs only), used as it is.
    """
    mode_key = json.dumps(
        [settings["mode"], settings["generator"], settings.get("tiles")], sort_keys=True
    )
    with _LOCK:
        if network is not None:
            key = (id(network), mode_key)
            if key not in _SEGMENTERS:
                _SEGMENTERS[key] = PlaneSegmenter(network, settings)
            return _SEGMENTERS[key]
        loaded = model_key(settings, backend)
        key = (*loaded, mode_key)
        if key not in _SEGMENTERS:
            if loaded not in _NETWORKS:
                _NETWORKS[loaded] = _load(settings, backend)
                _LOADS[loaded] = _LOADS.get(loaded, 0) + 1
            _SEGMENTERS[key] = PlaneSegmenter(_NETWORKS[loaded], settings)
        return _SEGMENTERS[key]


def _load(settings: dict[str, Any], backend: str | None) -> Any:
    import napari_sam_keras

    from ...runtime.backend import ensure_backend

    ensure_backend(backend)
    if settings["mode"] == "concept":
        return napari_sam_keras.load_concept_model(settings["model"])
    return napari_sam_keras.load_model(
        settings["model"], decoder=settings.get("decoder"), quantize=settings.get("quantize")
    )


def forget_models() -> None:
    """Drop this process's loaded models and segmenters (benchmarks: load again)."""
    with _LOCK:
        _NETWORKS.clear()
        _SEGMENTERS.clear()
