"""Segment many images: one label image per input, resumable, in-process or on dask.

The package's parts: the run (:mod:`.runner`: :func:`segment_batch`, planning, the summary,
in-process and dask), one input's work (:mod:`.inputs`), what each mode does to a plane
(:mod:`.modes`), the model loaded into every dask worker before it takes work
(:mod:`.worker_plugin`), a stack's planes spread over workers and assembled (:mod:`.planes`),
and prompts from a CSV or GeoJSON file (:mod:`.prompts_file`).
"""

from .inputs import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    STATUS_SKIPPED,
    BatchTask,
    segment_input,
)
from .modes import MODES
from .prompts_file import PromptsFileError, read_prompts_file
from .runner import BatchProgress, BatchSummary, ProgressCallback, segment_batch

__all__ = [
    "MODES",
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_PENDING",
    "STATUS_SKIPPED",
    "BatchProgress",
    "BatchSummary",
    "BatchTask",
    "ProgressCallback",
    "PromptsFileError",
    "read_prompts_file",
    "segment_batch",
    "segment_input",
]
