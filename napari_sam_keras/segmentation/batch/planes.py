"""The planes of a stack spread over a cluster's workers and assembled into one output.

On a dask cluster a stack segmented with ``all_planes`` is cut into chunks of
``planes_per_task`` planes, one task each, so that the workers share one large stack.
Each worker writes its chunk's labels (numbered from 1 in every plane) into a hidden parts
folder beside the output, named like :mod:`~napari_sam_keras.files.atomic_write`'s
temporaries (``.NAME-labels.XXXXXXXX.partial.tif``); when every chunk is in, the labels are
numbered on from plane to plane exactly as in one process (:func:`.inputs.number_on`) and
the output is written atomically.  A run killed midway leaves no output, only the parts
folder, which the next run removes before it starts.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...files.atomic_write import atomic_write, partial_directory
from .inputs import (
    STATUS_DONE,
    STATUS_FAILED,
    BatchTask,
    guarded,
    number_on,
    plane_labels,
    read_planes,
    select,
    task_row,
    write_output,
)


@dataclass(frozen=True)
class PlaneChunk:
    """Planes ``start:stop`` of one input's stack, for one worker."""

    task: BatchTask
    start: int
    stop: int
    #: The hidden folder of the input's parts.
    parts: str

    @property
    def part(self) -> Path:
        return Path(self.parts) / f"planes-{self.start:06d}.npy"


def plane_chunks(task: BatchTask, planes: int, per_task: int) -> list[PlaneChunk]:
    """The chunks of ``planes`` planes, ``per_task`` each, with a new parts folder."""
    parts = str(partial_directory(task.output))
    return [
        PlaneChunk(task, start, min(start + per_task, planes), parts)
        for start in range(0, planes, per_task)
    ]


def segment_chunk(chunk: PlaneChunk) -> dict[str, Any]:
    """Segment a chunk of planes (on a worker) and write its part; return its row."""

    def work() -> dict[str, Any]:
        task = chunk.task
        planes = read_planes(task, select(task), chunk.start, chunk.stop)
        labels = plane_labels(task, planes, first=chunk.start)
        with atomic_write(chunk.part) as tmp:
            np.save(tmp, np.stack(labels))
        return {"status": STATUS_DONE}

    return guarded(chunk.task, work)


def assemble(chunks: list[PlaneChunk], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The input's row once all its chunks are in: its output written from the parts (or
    the first chunk's failure); the parts folder is removed either way."""
    task = chunks[0].task
    workers = " ".join(dict.fromkeys(r["worker"] for r in rows if r.get("worker")))
    seconds = sum(float(r["seconds"] or 0) for r in rows)
    failed = [r for r in rows if r["status"] != STATUS_DONE]
    try:
        if failed:
            first = failed[0]
            return task_row(task, STATUS_FAILED, seconds=round(seconds, 3), worker=workers,
                            message=first["message"])  # fmt: skip
        start = time.perf_counter()

        def work() -> dict[str, Any]:
            planes = [p for c in chunks for p in np.load(c.part)]
            objects = write_output(task, number_on(planes), select(task))
            return {"status": STATUS_DONE, "objects": objects}

        row = guarded(task, work)
        row.update(worker=workers, seconds=round(seconds + time.perf_counter() - start, 3))
        row.pop("model_loads", None)
        row.pop("model_ready", None)
        return row
    finally:
        discard(chunks)


def discard(chunks: list[PlaneChunk]) -> None:
    """Remove the parts folder of ``chunks``."""
    if chunks:
        shutil.rmtree(chunks[0].parts, ignore_errors=True)
