"""Segment many images: one label image per input, resumable, in-process or on dask.distributed.

:func:`segment_batch` runs the automatic mask generator on every input exactly as
``napari-sam-keras auto`` does on one file (same generator, same ``masks_to_labels``, same
label dtype), and writes

* one label image per input into ``out_dir`` (``<stem>-labels.tif``, or
  ``<stem>-labels.ome.zarr``), each written to a temporary name and renamed when complete,
  with the settings it was made with stored inside;
* ``summary.csv``: input, output, status (``done``, ``skipped``, ``failed``, ``pending``),
  objects found, seconds, worker, message; rewritten atomically as the run goes.

An input whose output exists (it can only exist complete) is skipped, so an interrupted run
is resumed by running it again.  A bad input is reported in the summary and the run goes on.

With ``workers=N`` a dask ``LocalCluster`` of N processes does the work; with
``scheduler=ADDRESS`` an existing dask cluster does.  Each worker process loads the model
once (a per-process cache keyed by model source and backend) and is handed one image at a
time; results come back as files, and only a small row per image through the scheduler.
With neither, everything runs in this process and dask is not imported.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, OperationCancelled, SAMError
from ..files.atomic_write import remove_leftover_partials
from ..files.axis_readers import open_planes
from ..files.batch_files import (
    SUMMARY_NAME,
    check_format,
    check_unique_outputs,
    find_inputs,
    output_names,
    read_output_record,
    write_label_output,
    write_summary,
)
from ..files.resource_limits import check_shape_limit
from ..files.resource_limits import max_pixels as pixel_limit
from ..files.write_failures import describe_write_error
from ..model.model_source import ModelSource, resolve_model
from .generator_settings import DEFAULTS, check_generator_options

#: Segmentation modes; the instance decoder and tiling add theirs here.
MODES = ("amg", "concept")
#: Seconds between rewrites of summary.csv while a run goes on (and once at its end).
SUMMARY_INTERVAL_S = 2.0

STATUS_DONE, STATUS_SKIPPED, STATUS_FAILED, STATUS_PENDING = "done", "skipped", "failed", "pending"


@dataclass(frozen=True)
class BatchTask:
    """One input's work, small enough to hand to a dask worker."""

    input: str
    output: str
    settings: dict[str, Any]
    backend: str | None = None
    #: The pixel limit for reading an input whole (None: the default, see resource_limits).
    max_pixels: int | None = None


@dataclass
class BatchProgress:
    """What :func:`segment_batch` reports to its ``progress`` callback.

    ``inputs_done`` of ``inputs_total`` are finished (done, skipped or failed).  In-process,
    the input being segmented is ``current``, at plane ``plane`` of ``planes`` and point
    batch ``steps_done`` of ``steps_total`` of that plane; ``row`` is the summary row of
    the input that just finished (None otherwise).
    """

    inputs_done: int
    inputs_total: int
    current: str | None = None
    plane: int = 0
    planes: int = 0
    steps_done: int = 0
    steps_total: int = 0
    row: dict[str, Any] | None = None


@dataclass
class BatchSummary:
    """The result of :func:`segment_batch`: one row per input, as in ``summary.csv``."""

    rows: list[dict[str, Any]]
    summary_path: Path
    #: How many times each worker process (``host:pid``) loaded the model.
    model_loads: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def ok(self) -> bool:
        """Whether every input is done or skipped (none failed, none left pending)."""
        return all(row["status"] in (STATUS_DONE, STATUS_SKIPPED) for row in self.rows)


ProgressCallback = Callable[[BatchProgress], Any]


def segment_batch(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    model: Any = None,
    mode: str = "amg",
    *,
    points_per_side: int = DEFAULTS.points_per_side,
    points_per_batch: int = DEFAULTS.points_per_batch,
    pred_iou_thresh: float = DEFAULTS.pred_iou_thresh,
    stability_score_thresh: float = DEFAULTS.stability_score_thresh,
    box_nms_thresh: float = DEFAULTS.box_nms_thresh,
    crop_n_layers: int = DEFAULTS.crop_n_layers,
    min_mask_region_area: int = DEFAULTS.min_mask_region_area,
    contrast_limits: tuple[float, float] | None = None,
    all_planes: bool = False,
    output_format: str = "tiff",
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: ProgressCallback | None = None,
    max_pixels: int | None = None,
    concept: dict[str, Any] | None = None,
    channel: int | None = None,
    z: int | None = None,
    t: int | None = None,
    ngff_version: str = "0.5",
    quantize: str | None = None,
    **generator_options: float | int,
) -> BatchSummary:
    """Segment every image of ``inputs`` into ``out_dir``; see the module docstring.

    Args:
        inputs: image files, folders (their image files) and glob patterns.
        out_dir: folder of the label images and ``summary.csv`` (created if missing).
        model: a model source (preset name or checkpoint path, as for
            :func:`~napari_sam_keras.load_model`; default ``$NAPARI_SAM_KERAS_MODEL`` or
            the default preset), or, in-process only, a loaded ``SAMNetwork``.
        mode: ``"amg"``: the automatic mask generator; ``"concept"``: SAM 3's "find all
            like the examples" with ``concept`` (see
            :func:`~napari_sam_keras.segmentation.concept_segmenter.concept_settings`:
            ``text``, ``exemplars``, ``exemplar_labels``, ``score_threshold``; the model a
            SAM 3 source, default ``sam3_pcs``).
        points_per_side, ...: the generator's options, as for ``napari-sam-keras auto``;
            further scalar options of :class:`SAMAutomaticMaskGenerator` go in
            ``generator_options``.
        contrast_limits: intensity range mapped to 0..255 (default: each plane's min..max
            for non-8-bit images).
        all_planes: segment every plane of a stack (Z, Y, X[, C]) into a label stack, the
            labels of each plane numbered after those of the planes before it.  Without it
            a stack is a failed input.
        output_format: ``"tiff"`` or ``"ome-zarr"`` (NGFF ``ngff_version``, 0.5 or 0.4);
            both keep each input's pixel sizes.
        overwrite: segment again inputs whose output exists (else they are skipped).
        workers: run on a local dask cluster of this many worker processes.
        scheduler: run on the existing dask cluster at this address.
        channel, z, t: the plane of each input by axis name (``--channel``, ``--z``,
            ``--t``); an input whose axes do not fit fails before the model is loaded.
        progress: called with a :class:`BatchProgress` as work goes on; raising
            :class:`~napari_sam_keras.OperationCancelled` stops the run (finished outputs
            stay, summary.csv is written).
        quantize: ``"int8"``: every process loads the model with its image encoder
            quantized (:func:`~napari_sam_keras.load_model`'s ``quantize``); kept with the
            outputs' settings.
        max_pixels: an input whose file header claims more pixels is a ``failed`` row,
            refused before it is decoded (default: see
            :mod:`~napari_sam_keras.files.resource_limits`).

    Returns:
        A :class:`BatchSummary`; ``summary.ok`` is False if any input failed.
    """
    if mode not in MODES:
        raise SAMError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if workers is not None and scheduler is not None:
        raise SAMError("give workers or scheduler, not both")
    if workers is not None and workers < 1:
        raise SAMError(f"workers must be at least 1, got {workers}")
    check_format(output_format)
    limit = pixel_limit(max_pixels)
    options = _generator_settings(
        points_per_side=points_per_side,
        points_per_batch=points_per_batch,
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
        box_nms_thresh=box_nms_thresh,
        crop_n_layers=crop_n_layers,
        min_mask_region_area=min_mask_region_area,
        **generator_options,
    )
    distributed = workers is not None or scheduler is not None
    quantize = _check_quantize(quantize, model, mode)
    if mode == "concept":
        from .concept_segmenter import concept_settings

        options = concept_settings(**(concept or {}))
        model = "sam3_pcs" if model is None else model
    network, source = _model_and_source(model, distributed, mode)
    settings = {
        "mode": mode,
        "model": source,
        "generator": options,
        "all_planes": bool(all_planes),
        "contrast_limits": None if contrast_limits is None else [float(v) for v in contrast_limits],
    }
    planes = {k: int(v) for k, v in (("channel", channel), ("z", z), ("t", t)) if v is not None}
    if planes:  # only when given: outputs of earlier runs keep their settings
        settings["planes"] = planes
    if ngff_version != "0.5":
        settings["ngff_version"] = ngff_version
    if quantize is not None:  # only when given, like planes
        settings["quantize"] = quantize

    out_dir = Path(out_dir)
    tasks, problems = _plan_tasks(inputs, out_dir, output_format, settings, limit)
    rows: list[dict[str, Any]] = [_row(task, STATUS_PENDING) for task in tasks]
    rows += [
        {"input": text, "output": "", "status": STATUS_FAILED, "message": message}
        for text, message in problems
    ]
    run = _Run(rows, out_dir / SUMMARY_NAME, len(problems), progress)
    todo = []
    for index, task in enumerate(tasks):
        existing = None if overwrite else _existing_output(task)
        if existing is None:
            existing = _axes_problem(task)  # before any model is loaded
        if existing is None:
            todo.append(index)
        else:
            run.finish(index, existing)
    run.write_summary()
    try:
        if not todo:
            pass
        elif distributed:
            _run_distributed(tasks, todo, run, workers, scheduler)
        else:
            _run_in_process(tasks, todo, run, network)
    finally:
        run.write_summary()
    return BatchSummary(rows, run.summary_path, dict(run.model_loads))


def _check_quantize(quantize: Any, model: Any, mode: str) -> str | None:
    """``quantize`` checked: it applies to a SAM model that the batch loads itself."""
    from ..model.quantization import check_quantize

    quantize = check_quantize(quantize)
    if quantize is not None and mode == "concept":
        raise SAMError("quantize applies to SAM's image encoder, not to mode='concept'")
    if quantize is not None and not (model is None or isinstance(model, (str, os.PathLike))):
        raise SAMError(
            "quantize applies to a model source that the batch loads; for a loaded network "
            "use load_model(..., quantize=...)"
        )
    return quantize


def _model_key(settings: dict[str, Any], backend: str | None) -> tuple:
    """What a process loads once: the model source, the backend, the quantization."""
    return settings["model"], backend, settings.get("quantize")


def _model_and_source(model: Any, distributed: bool, mode: str = "amg") -> tuple[Any, str]:
    """(a loaded network or None, the model's source name kept with every output)."""
    if mode == "concept" and isinstance(model, (str, os.PathLike)):
        return None, _source_name(os.fspath(model))  # load_concept_model says what is wrong
    if model is None or isinstance(model, (str, os.PathLike, ModelSource)):
        return None, _check_source(model)
    if distributed:
        raise SAMError(
            "with workers or scheduler, give the model as a source (a preset name or a "
            "checkpoint path) that each worker loads, not a loaded network"
        )
    return model, _source_name(getattr(model, "name", "model"))


def _plan_tasks(
    inputs: Any, out_dir: Path, output_format: str, settings: dict, limit: int | None = None
) -> tuple[list[BatchTask], list[tuple[str, str]]]:
    """One task per input file (and the inputs that could not be found), in ``out_dir``."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if out_dir.exists() and not out_dir.is_dir():
        raise SAMError(f"the output folder {out_dir} is a file")
    inputs = list(inputs)
    files, problems = find_inputs(inputs, exclude=out_dir)
    if not files and not problems:
        if inputs:  # every image named lies in the output folder, which is never read
            raise SAMError(
                f"the inputs ({', '.join(map(os.fspath, inputs[:3]))}) are the output folder "
                f"{out_dir} or inside it: give --out a folder outside the inputs"
            )
        raise SAMError("no inputs given")
    backend = _backend_name()
    names = output_names(files, output_format)
    tasks = [
        # absolute: a worker of a cluster may run in another folder
        BatchTask(os.path.abspath(path), os.path.abspath(out_dir / name), settings, backend, limit)
        for path, name in zip(files, names, strict=True)
    ]
    check_unique_outputs([task.output for task in tasks])  # before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:  # temporaries of a run that was killed
        remove_leftover_partials(task.output)
    return tasks, problems


# --- settings ----------------------------------------------------------------------------


def _generator_settings(**options: Any) -> dict[str, Any]:
    """The generator's options, checked before any work (``auto``'s limits)."""
    return check_generator_options(options)


def _source_name(text: str) -> str:
    path = Path(text).expanduser()
    return os.path.abspath(path) if path.exists() else text


def _check_source(model: str | os.PathLike | ModelSource | None) -> str:
    """The name of the model each worker loads (``resolve_model``'s: presets by name, files
    by absolute path), checked before any work."""
    return resolve_model(model).name


def _backend_name() -> str:
    """The Keras backend of this process (the active one once Keras is imported)."""
    import sys

    from ..runtime.backend import requested_backend

    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return requested_backend()


# --- the run: rows, summary, progress ----------------------------------------------------


def _row(task: BatchTask, status: str, **values: Any) -> dict[str, Any]:
    return {
        "input": task.input,
        "output": task.output,
        "status": status,
        "objects": "",
        "seconds": "",
        "worker": "",
        "message": "",
        **values,
    }


class _Run:
    """The rows of a run, its summary.csv (rewritten at most every few seconds) and its
    progress reports."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        summary_path: Path,
        finished: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.rows = rows
        self.summary_path = summary_path
        self.done = finished
        self.progress = progress
        self.model_loads: dict[str, int] = {}
        self._written = 0.0

    def report(self, **values: Any) -> None:
        if self.progress is not None:
            self.progress(BatchProgress(self.done, len(self.rows), **values))

    def finish(self, index: int, row: dict[str, Any]) -> None:
        loads = row.pop("model_loads", None)
        if loads and row.get("worker"):  # 0: a network handed in, not loaded here
            self.model_loads[row["worker"]] = max(loads, self.model_loads.get(row["worker"], 0))
        self.rows[index] = row
        self.done += 1
        if time.monotonic() - self._written > SUMMARY_INTERVAL_S:
            self.write_summary()
        self.report(row=row)

    def write_summary(self) -> None:
        write_summary(self.summary_path, self.rows)
        self._written = time.monotonic()


def _existing_output(task: BatchTask) -> dict[str, Any] | None:
    """The row of an input whose output exists: skipped, or failed if it was made otherwise."""
    path = Path(task.output)
    if not path.exists():
        return None
    try:
        record = read_output_record(path)
    except ImageError as exc:
        return _row(
            task,
            STATUS_FAILED,
            message=f"{exc}; delete it or run with overwrite to replace it",
        )
    if record.get("settings") != task.settings:
        changed = sorted(
            key
            for key in set(task.settings) | set(record.get("settings") or {})
            if (record.get("settings") or {}).get(key) != task.settings.get(key)
        )
        return _row(
            task,
            STATUS_FAILED,
            message=f"the output exists but was made with other settings ({', '.join(changed)}); "
            "use another output folder, or overwrite to replace it",
        )
    return _row(task, STATUS_SKIPPED, objects=record.get("objects", ""), message="output exists")


def _run_in_process(
    tasks: Sequence[BatchTask], todo: Sequence[int], run: _Run, network: Any
) -> None:
    if network is None:  # a model that cannot be loaded fails the run, not every input
        first = tasks[todo[0]]
        _generator(first.settings, first.backend)
    for index in todo:
        task = tasks[index]
        run.report(current=task.input)

        def progress(plane, planes, done, total, _task=task):
            run.report(
                current=_task.input, plane=plane, planes=planes, steps_done=done, steps_total=total
            )

        run.finish(index, segment_input(task, network=network, progress=progress))


def _run_distributed(
    tasks: Sequence[BatchTask],
    todo: Sequence[int],
    run: _Run,
    workers: int | None,
    scheduler: str | None,
) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise SAMError(
            "workers and scheduler need dask.distributed: pip install 'napari-sam-keras[batch]'"
        ) from exc
    import logging
    import uuid
    from contextlib import ExitStack

    with ExitStack() as stack:
        if scheduler is not None:
            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except OSError as exc:
                raise SAMError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from exc
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(Client(cluster))
        run_id = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                segment_input, tasks[index], key=f"segment-input-{run_id}-{index}", pure=False
            ): index
            for index in todo
        }
        try:
            for future in as_completed(futures):
                index = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # the worker died (again and again), lost, ...
                    row = _row(tasks[index], STATUS_FAILED, message=f"{type(exc).__name__}: {exc}")
                finally:
                    future.release()
                run.finish(index, row)
        except BaseException:
            client.cancel(list(futures))
            raise


# --- one input, in this process or on a worker --------------------------------------------

_LOCK = threading.Lock()
_NETWORKS: dict[tuple[str, str | None, str | None], Any] = {}
_GENERATORS: dict[tuple[str, str | None, str | None, str], Any] = {}
#: How many times this process loaded each model (source, backend); reported per row.
_LOADS: dict[tuple[str, str | None, str | None], int] = {}


def _generator(settings: dict[str, Any], backend: str | None, network: Any = None):
    """The process's generator for these settings, loading the model once per process."""
    from .automatic_mask_generator import SAMAutomaticMaskGenerator

    model_key = _model_key(settings, backend)
    key = (*model_key, json.dumps(settings["generator"], sort_keys=True))
    if settings["mode"] == "concept":
        from .concept_segmenter import ConceptBatchRunner

        make, load = ConceptBatchRunner, "load_concept_model"
    else:
        make, load = SAMAutomaticMaskGenerator, "load_model"
    with _LOCK:
        if network is not None:
            return make(network, **settings["generator"])
        if key not in _GENERATORS:
            if model_key not in _NETWORKS:
                import napari_sam_keras

                from ..runtime.backend import ensure_backend

                ensure_backend(backend)
                quantize = {"quantize": model_key[2]} if model_key[2] else {}
                _NETWORKS[model_key] = getattr(napari_sam_keras, load)(
                    settings["model"], **quantize
                )
                _LOADS[model_key] = _LOADS.get(model_key, 0) + 1
            _GENERATORS[key] = make(_NETWORKS[model_key], **settings["generator"])
        return _GENERATORS[key]


def _selection(task: BatchTask):
    """The input's plane(s) chosen by axis name (settings ``planes``), unread."""
    settings = task.settings
    return open_planes(
        task.input,
        **settings.get("planes", {}),
        stack=None if settings["all_planes"] else False,
        stack_hint=": segment every plane with all_planes (--all-planes)",
    )


def _axes_problem(task: BatchTask) -> dict[str, Any] | None:
    """The failed row of an input whose axes do not fit the settings (read from its
    metadata, no pixels), or None."""
    try:
        _selection(task)
    except SAMError as exc:
        return _row(task, STATUS_FAILED, message=str(exc))
    return None


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def segment_input(
    task: BatchTask,
    network: Any = None,
    progress: Callable[[int, int, int, int], Any] | None = None,
) -> dict[str, Any]:
    """Segment one input and write its output; return its summary row.

    What ``napari-sam-keras auto`` does for one file (for a stack: for each plane).  Any
    failure of this input (unreadable, wrong shape, ...) becomes a ``failed`` row; only a
    cancel or an interrupt propagates.  ``progress(plane, planes, done, total)`` reports
    the point batches of each plane.
    """
    from .labels import masks_to_labels

    start = time.perf_counter()
    settings = task.settings
    row = _row(task, STATUS_FAILED, worker=_worker_name())
    try:
        selection = _selection(task)
        is_stack = selection.is_stack
        # the shape the file declares, before any pixel is decoded
        check_shape_limit(selection.data.shape, task.input, task.max_pixels)
        data = np.asarray(selection.data)
        planes = list(data) if is_stack else [data]
        generator = _generator(settings, task.backend, network)
        limits = settings["contrast_limits"]
        limits = None if limits is None else tuple(limits)
        stack = []
        offset = 0
        for z, plane in enumerate(planes):
            step = None if progress is None else (lambda d, t, z=z: progress(z, len(planes), d, t))
            records = generator.generate(plane, progress=step, contrast_limits=limits)
            labels = masks_to_labels(records, shape=plane.shape[:2]).astype(np.int64)
            if offset:
                labels[labels > 0] += offset
            offset = max(offset, int(labels.max()) if labels.size else 0)
            stack.append(labels)
        labels = np.stack(stack) if is_stack else stack[0]
        objects = int(np.unique(labels[labels > 0]).size)
        record = {
            "settings": settings,
            "input": os.path.abspath(task.input),
            "objects": objects,
            "backend": task.backend,
        }
        write_label_output(
            Path(task.output),
            labels,
            record,
            selection.pixel_sizes,
            selection.label_axes,
            settings.get("ngff_version", "0.5"),
        )
        row.update(status=STATUS_DONE, objects=objects)
    except (OperationCancelled, KeyboardInterrupt):
        raise
    except SAMError as exc:
        row["message"] = str(exc)
    except OSError as exc:  # a full disk, a folder without permission: one clear line
        row["message"] = describe_write_error(exc)
    except Exception as exc:  # a bad file must not stop the other inputs
        row["message"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - start, 3)
    row["model_loads"] = _LOADS.get(_model_key(settings, task.backend), 0)
    return row
