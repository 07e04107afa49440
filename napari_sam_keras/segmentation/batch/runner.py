"""Segment many images: one label image per input, resumable, in-process or on dask.distributed.

:func:`segment_batch` does to every input exactly what the single-image command of its mode
does to one file (``napari-sam-keras auto`` for ``amg``, ``auto --mode ais``, ``auto --mode
concept``; ``predict`` for the prompts of a prompts file; same segmenter, same labels, same
tiling), and writes

* one label image per input into ``out_dir`` (``<stem>-labels.tif``, or
  ``<stem>-labels.ome.zarr``), each written to a temporary name and renamed when complete,
  with the settings it was made with stored inside;
* ``summary.csv``: input, output, status (``done``, ``skipped``, ``failed``, ``pending``),
  objects found, seconds, worker, message; rewritten atomically as the run goes.

An input whose output exists (it can only exist complete) is skipped, so an interrupted run
is resumed by running it again.  A bad input is reported in the summary and the run goes on.

With ``workers=N`` a dask ``LocalCluster`` of N processes does the work; with
``scheduler=ADDRESS`` an existing dask cluster does.  Each worker process loads the model
once, before it takes work (a worker plugin, :mod:`.worker_plugin`, filling the per-process
cache of :mod:`.modes`, keyed by model source and backend; a restarted worker loads it
again before its first task), and is handed one image, or one chunk of a stack's planes
(:mod:`.planes`), at a time; results come back as files, and only a small row per task
through the scheduler.  With neither, everything runs in this process and dask is not
imported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ImageError, SAMError
from ...files.atomic_write import remove_leftover_partials
from ...files.batch_files import (
    SUMMARY_NAME,
    check_format,
    check_unique_outputs,
    find_inputs,
    output_names,
    read_output_record,
    write_summary,
)
from ...files.resource_limits import max_pixels as pixel_limit
from ...model.model_source import ModelSource, resolve_model
from ...processing.prompt_rules import check_watershed_settings
from ..generator_settings import DEFAULTS, check_generator_options
from ..tiling import as_pair
from . import modes
from .inputs import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    STATUS_SKIPPED,
    BatchTask,
    segment_input,
    select,
    task_row,
)
from .modes import MODES

#: Seconds between rewrites of summary.csv while a run goes on (and once at its end).
SUMMARY_INTERVAL_S = 2.0


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
    #: (input, worker) of each task that found no model loaded in its process and loaded
    #: it itself.  Empty normally: in-process the model is loaded before the first input,
    #: on dask each worker loads it before it takes work (:mod:`.worker_plugin`).
    cold_tasks: list[tuple[str, str]] = field(default_factory=list)

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
    mode: str | None = None,
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
    prompts: str | os.PathLike | None = None,
    watershed: dict[str, Any] | None = None,
    decoder: str | os.PathLike | None = None,
    tile_shape: int | tuple[int, int] | None = None,
    halo: int | tuple[int, int] | None = None,
    planes_per_task: int | None = None,
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
        mode: ``"amg"`` (the default): the automatic mask generator; ``"ais"``: the
            model's instance decoder and watershed (``watershed``: thresholds as for
            :meth:`~napari_sam_keras.InstanceSegmenter.segment`, e.g. ``min_size``;
            ``decoder``: a micro-sam decoder file, as ``load_model``'s); ``"concept"``:
            SAM 3's "find all like the examples" with ``concept`` (see
            :func:`~napari_sam_keras.segmentation.concept_segmenter.concept_settings`:
            ``text``, ``exemplars``, ``exemplar_labels``, ``score_threshold``; the model a
            SAM 3 source, default ``sam3_pcs``); ``"prompts"`` (the default when
            ``prompts`` is given): each image's points and boxes from the prompts file.
        prompts: a CSV or GeoJSON file of points and boxes per image (see
            :mod:`~napari_sam_keras.segmentation.batch.prompts_file`), checked before any
            work; one label per object, as ``napari-sam-keras predict``.  Inputs without
            prompts in it are ``failed`` rows.
        points_per_side, ...: the generator's options, as for ``napari-sam-keras auto``;
            further scalar options of :class:`SAMAutomaticMaskGenerator` go in
            ``generator_options``.
        contrast_limits: intensity range mapped to 0..255 (default: each plane's min..max
            for non-8-bit images).
        tile_shape, halo: segment each plane tile by tile, as the single-image commands'
            ``--tile-shape/--halo`` (planes are then read lazily, tile by tile).
        all_planes: segment every plane of a stack (Z, Y, X[, C]) into a label stack, the
            labels of each plane numbered after those of the planes before it.  Without it
            a stack is a failed input.
        planes_per_task: on a dask cluster, the planes of a stack handed to a worker at
            once (default 1); the parts are assembled into one output, atomically.
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
    mode = _check_mode(mode, prompts, all_planes, decoder)
    if workers is not None and scheduler is not None:
        raise SAMError("give workers or scheduler, not both")
    if workers is not None and workers < 1:
        raise SAMError(f"workers must be at least 1, got {workers}")
    per_task = 1 if planes_per_task is None else int(planes_per_task)
    if per_task < 1:
        raise SAMError(f"planes_per_task must be at least 1, got {planes_per_task}")
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
        from ..concept_segmenter import concept_settings

        options = concept_settings(**(concept or {}))
        model = "sam3_pcs" if model is None else model
    elif mode == "ais":
        options = _watershed_settings(watershed)
    elif mode == "prompts":
        options = {}
    network, source = _model_and_source(model, distributed, mode)
    settings = {
        "mode": mode,
        "model": source,
        "generator": options,
        "all_planes": bool(all_planes),
        "contrast_limits": None if contrast_limits is None else [float(v) for v in contrast_limits],
    }
    # the keys below only when given: outputs of earlier runs keep their settings
    planes = {k: int(v) for k, v in (("channel", channel), ("z", z), ("t", t)) if v is not None}
    if planes:
        settings["planes"] = planes
    if ngff_version != "0.5":
        settings["ngff_version"] = ngff_version
    tiles = _tile_settings(tile_shape, halo)
    if tiles:
        settings["tiles"] = tiles
    if decoder is not None:
        settings["decoder"] = _source_name(os.fspath(decoder))
    if quantize is not None:  # only when given, like planes
        settings["quantize"] = quantize

    out_dir = Path(out_dir)
    tasks, problems = _plan_tasks(inputs, out_dir, output_format, settings, limit, prompts)
    rows: list[dict[str, Any]] = [task_row(task, STATUS_PENDING) for task in tasks]
    rows += [
        {"input": text, "output": "", "status": STATUS_FAILED, "message": message}
        for text, message in problems
    ]
    run = _Run(rows, out_dir / SUMMARY_NAME, len(problems), progress)
    todo = []
    counts: dict[int, int] = {}
    for index, task in enumerate(tasks):
        existing = None if overwrite else _existing_output(task)
        if existing is None:
            existing, counts[index] = _input_planes(task)  # before any model is loaded
        if existing is None:
            todo.append(index)
        else:
            run.finish(index, existing)
    run.write_summary()
    try:
        if not todo:
            pass
        elif distributed:
            _run_distributed(tasks, todo, run, workers, scheduler, counts, per_task)
        else:
            _run_in_process(tasks, todo, run, network)
    finally:
        run.write_summary()
    return BatchSummary(rows, run.summary_path, dict(run.model_loads), list(run.cold_tasks))


def _check_mode(mode: str | None, prompts: Any, all_planes: bool, decoder: Any) -> str:
    """The run's mode, and the options that go with it, checked before any work."""
    if mode is None:
        mode = "prompts" if prompts is not None else "amg"
    if mode not in MODES:
        raise SAMError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "prompts" and prompts is None:
        raise SAMError("mode 'prompts' needs a prompts file (--prompts FILE)")
    if prompts is not None and mode != "prompts":
        raise SAMError(
            f"a prompts file segments the prompts of each image: it does not go with mode "
            f"{mode!r} (leave the mode out)"
        )
    if mode == "prompts" and all_planes:
        raise SAMError(
            "a prompts file gives the prompts of one plane per image: choose the plane with "
            "--z (z=), not --all-planes"
        )
    if decoder is not None and mode != "ais":
        raise SAMError("an instance decoder file (--decoder) is for --mode ais")
    return mode


def _check_quantize(quantize: Any, model: Any, mode: str) -> str | None:
    """``quantize`` checked: it applies to a SAM model that the batch loads itself."""
    from ...model.quantization import check_quantize

    quantize = check_quantize(quantize)
    if quantize is not None and mode == "concept":
        raise SAMError("quantize applies to SAM's image encoder, not to mode='concept'")
    if quantize is not None and not (model is None or isinstance(model, (str, os.PathLike))):
        raise SAMError(
            "quantize applies to a model source that the batch loads; for a loaded network "
            "use load_model(..., quantize=...)"
        )
    return quantize


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
    inputs: Any,
    out_dir: Path,
    output_format: str,
    settings: dict,
    limit: int | None = None,
    prompts: str | os.PathLike | None = None,
) -> tuple[list[BatchTask], list[tuple[str, str]]]:
    """One task per input file (and the inputs that could not be found, or that have no
    prompts in the prompts file), in ``out_dir``."""
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
    if prompts is not None:
        tasks, missing = _with_prompts(tasks, prompts)
        problems += missing
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:  # temporaries of a run that was killed
        remove_leftover_partials(task.output)
    return tasks, problems


def _with_prompts(
    tasks: list[BatchTask], path: str | os.PathLike
) -> tuple[list[BatchTask], list[tuple[str, str]]]:
    """Each task with its image's prompts in its settings (so an output made from other
    prompts is told apart); the inputs without prompts as problems.  The whole file, and
    each image's prompts against its size (read from its header), are checked here."""
    from dataclasses import replace

    from .prompts_file import check_prompts_inside, read_prompts_file

    found = read_prompts_file(path, [task.input for task in tasks])
    kept, missing = [], []
    for task in tasks:
        objects = found.get(task.input)
        if objects is None:
            missing.append((task.input, f"no prompts for this image in {path}"))
            continue
        task = replace(task, settings={**task.settings, "prompts": objects})
        try:
            selection = select(task)
        except SAMError:
            pass  # reported as this input's failure
        else:
            if not selection.is_stack:
                size = tuple(int(n) for n in selection.data.shape[:2])
                check_prompts_inside(objects, size, Path(task.input).name)
        kept.append(task)
    return kept, missing


# --- settings ----------------------------------------------------------------------------


def _watershed_settings(values: dict[str, Any] | None) -> dict[str, Any]:
    """The instance decoder's thresholds that were given, checked (the core's rule)."""
    given = {k: v for k, v in (values or {}).items() if v is not None}
    from ...processing.instance_watershed import WatershedSettings

    known = set(WatershedSettings.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise SAMError(
            f"unknown watershed setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}"
        )
    check_watershed_settings(given)
    return given


def _tile_settings(tile_shape: Any, halo: Any) -> dict[str, Any] | None:
    """``tile_shape`` and ``halo`` as plain lists, checked (the tiling's rules), or None."""
    if tile_shape is None:
        if halo is not None:
            raise SAMError("halo (--halo) needs tile_shape (--tile-shape)")
        return None
    shape = as_pair(tile_shape, "tile_shape", 1)
    halo = as_pair(halo, "halo", 0)
    return {"tile_shape": list(shape), "halo": None if halo is None else list(halo)}


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

    from ...runtime.backend import requested_backend

    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return requested_backend()


# --- the run: rows, summary, progress ----------------------------------------------------


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
        self.cold_tasks: list[tuple[str, str]] = []
        self._written = 0.0

    def report(self, **values: Any) -> None:
        if self.progress is not None:
            self.progress(BatchProgress(self.done, len(self.rows), **values))

    def count_loads(self, row: dict[str, Any]) -> None:
        """Keep how many times the row's worker loaded the model, and whether the row's
        task had to load it (from the row)."""
        loads = row.pop("model_loads", None)
        ready = row.pop("model_ready", True)
        if loads and row.get("worker"):  # 0: a network handed in, not loaded here
            self.model_loads[row["worker"]] = max(loads, self.model_loads.get(row["worker"], 0))
            if not ready:
                self.cold_tasks.append((row["input"], row["worker"]))

    def finish(self, index: int, row: dict[str, Any]) -> None:
        self.count_loads(row)
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
        return task_row(
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
        return task_row(
            task,
            STATUS_FAILED,
            message=f"the output exists but was made with other settings ({', '.join(changed)}); "
            "use another output folder, or overwrite to replace it",
        )
    return task_row(
        task, STATUS_SKIPPED, objects=record.get("objects", ""), message="output exists"
    )


def _input_planes(task: BatchTask) -> tuple[dict[str, Any] | None, int]:
    """(the failed row of an input whose axes do not fit the settings, or None; its number
    of planes, 0 for a 2D image), read from its metadata, no pixels."""
    try:
        selection = select(task)
    except SAMError as exc:
        return task_row(task, STATUS_FAILED, message=str(exc)), 0
    return None, int(selection.data.shape[0]) if selection.is_stack else 0


def _run_in_process(
    tasks: Sequence[BatchTask], todo: Sequence[int], run: _Run, network: Any
) -> None:
    # a model that cannot be loaded (or has no instance decoder) fails the run, not every input
    first = tasks[todo[0]]
    modes.plane_segmenter(first.settings, first.backend, network)
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
    counts: dict[int, int],
    per_task: int,
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

    from .planes import assemble, discard, plane_chunks, segment_chunk
    from .worker_plugin import model_plugin

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
        first = tasks[todo[0]]
        # every worker loads the model before it takes work, restarted ones too
        stack.enter_context(model_plugin(client, first.settings, first.backend))
        run_id = uuid.uuid4().hex[:8]
        futures = {}  # future -> (input index, its chunk or None)
        chunks: dict[int, list] = {}  # input index -> its plane chunks (a stack spread out)
        parts: dict[int, list] = {}  # input index -> the rows of its chunks done so far
        planes_done: dict[int, int] = {}
        for index in todo:
            task = tasks[index]
            if counts.get(index, 0) > per_task:
                chunks[index] = plane_chunks(task, counts[index], per_task)
                parts[index] = []
                for chunk in chunks[index]:
                    key = f"segment-planes-{run_id}-{index}-{chunk.start}"
                    futures[client.submit(segment_chunk, chunk, key=key, pure=False)] = (
                        index,
                        chunk,
                    )
            else:
                key = f"segment-input-{run_id}-{index}"
                futures[client.submit(segment_input, task, key=key, pure=False)] = (index, None)
        try:
            for future in as_completed(futures):
                index, chunk = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # the worker died (again and again), lost, ...
                    row = task_row(
                        tasks[index], STATUS_FAILED, message=f"{type(exc).__name__}: {exc}"
                    )
                finally:
                    future.release()
                if chunk is None:
                    run.finish(index, row)
                    continue
                run.count_loads(row)
                parts[index].append(row)
                if len(parts[index]) < len(chunks[index]):
                    planes_done[index] = planes_done.get(index, 0) + chunk.stop - chunk.start
                    run.report(  # the last plane done, numbered from 0 as in-process
                        current=tasks[index].input,
                        plane=planes_done[index] - 1,
                        planes=counts[index],
                    )
                else:
                    run.finish(index, assemble(chunks[index], parts.pop(index)))
        except BaseException:
            client.cancel(list(futures))
            for index in parts:  # stopped: unfinished stacks leave no parts behind
                discard(chunks[index])
            raise
