"""One input of a batch run: its task, its planes read, segmented by the run's mode and
written as one label image (in this process or on a dask worker)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import OperationCancelled, SAMError
from ...files.axis_readers import open_planes
from ...files.batch_files import write_label_output
from ...files.resource_limits import check_block_limit, check_shape_limit
from ...files.write_failures import describe_write_error
from . import modes

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


def task_row(task: BatchTask, status: str, **values: Any) -> dict[str, Any]:
    """A summary row of ``task``."""
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


def select(task: BatchTask):
    """The input's plane(s) chosen by axis name (settings ``planes``), unread."""
    settings = task.settings
    return open_planes(
        task.input,
        **settings.get("planes", {}),
        stack=None if settings["all_planes"] else False,
        stack_hint=": segment every plane with all_planes (--all-planes)",
    )


def tiled(task: BatchTask) -> bool:
    return bool(task.settings.get("tiles"))


def read_planes(task: BatchTask, selection: Any, start: int = 0, stop: int | None = None) -> list:
    """The 2D planes to segment (of a stack: planes ``start:stop``), checked against the
    pixel limit before any pixel is decoded; with tiles they stay lazy (read tile by tile)."""
    data = selection.data
    if selection.is_stack:
        data = data[start:stop]
    if tiled(task):
        check_block_limit(selection.source.data, task.input, task.max_pixels)
    else:
        check_shape_limit(data.shape, task.input, task.max_pixels)
        data = np.asarray(data)
    return [data[i] for i in range(data.shape[0])] if selection.is_stack else [data]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def plane_labels(
    task: BatchTask,
    planes: Sequence[Any],
    network: Any = None,
    progress: Callable[[int, int, int, int], Any] | None = None,
    first: int = 0,
) -> list[np.ndarray]:
    """Each plane's labels (int64, numbered from 1 in every plane) by the run's mode.

    ``progress(plane, planes, done, total)`` reports the steps (point batches, tiles) of
    each plane; ``first`` is the number of the first plane in the input (for progress).
    """
    settings = task.settings
    segmenter = modes.plane_segmenter(settings, task.backend, network)
    limits = settings["contrast_limits"]
    limits = None if limits is None else tuple(limits)
    out = []
    for z, plane in enumerate(planes, start=first):
        step = None if progress is None else (lambda d, t, z=z: progress(z, len(planes), d, t))
        out.append(segmenter.labels(plane, limits, settings.get("prompts"), step))
    return out


def number_on(planes: Sequence[np.ndarray]) -> np.ndarray:
    """A label stack from per-plane labels: each plane's labels numbered after the highest
    label of the planes before it."""
    stack = []
    offset = 0
    for labels in planes:
        labels = np.array(labels, dtype=np.int64)
        if offset:
            labels[labels > 0] += offset
        offset = max(offset, int(labels.max()) if labels.size else 0)
        stack.append(labels)
    return np.stack(stack)


def write_output(task: BatchTask, labels: np.ndarray, selection: Any) -> int:
    """Write the input's label image (atomically, its settings inside); the object count."""
    objects = int(np.unique(labels[labels > 0]).size)
    record = {
        "settings": task.settings,
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
        task.settings.get("ngff_version", "0.5"),
    )
    return objects


def guarded(task: BatchTask, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The summary row of ``work()`` (its values added to a ``failed`` row): any failure of
    this input becomes the row's message; only a cancel or an interrupt propagates."""
    start = time.perf_counter()
    row = task_row(task, STATUS_FAILED, worker=worker_name())
    ready = modes.is_loaded(task.settings, task.backend)  # False: this task loads it
    try:
        row.update(work())
    except (OperationCancelled, KeyboardInterrupt):
        raise
    except SAMError as exc:
        row["message"] = str(exc)
    except OSError as exc:  # a full disk, a folder without permission: one clear line
        row["message"] = describe_write_error(exc)
    except Exception as exc:  # a bad file must not stop the other inputs
        row["message"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - start, 3)
    row["model_loads"] = modes.loads(task.settings, task.backend)
    row["model_ready"] = ready
    return row


def segment_input(
    task: BatchTask,
    network: Any = None,
    progress: Callable[[int, int, int, int], Any] | None = None,
) -> dict[str, Any]:
    """Segment one input and write its output; return its summary row.

    What the single-image command of the run's mode does for one file (for a stack: for
    each plane).  Any failure of this input (unreadable, wrong shape, ...) becomes a
    ``failed`` row; only a cancel or an interrupt propagates.  ``progress(plane, planes,
    done, total)`` reports the steps of each plane.
    """

    def work() -> dict[str, Any]:
        selection = select(task)
        planes = plane_labels(task, read_planes(task, selection), network, progress)
        labels = number_on(planes) if selection.is_stack else planes[0]
        return {"status": STATUS_DONE, "objects": write_output(task, labels, selection)}

    return guarded(task, work)
