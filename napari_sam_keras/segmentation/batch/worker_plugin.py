"""The batch's model loaded into every dask worker before it takes work.

:func:`segment_batch` registers a :class:`ModelPlugin` (a ``distributed.WorkerPlugin``) on
the cluster it runs on, for the length of the run.  dask calls its :meth:`~ModelPlugin.setup`

* on every worker of the cluster when the plugin is registered, before any task is
  submitted (the run waits until every worker has its model);
* on every worker that joins later, restarted ones included (a worker killed by its
  memory limit or a node failure and started again by its nanny), *before* that worker
  reads any message from the scheduler: it starts no task until its model is loaded.

``setup`` fills the same per-process cache the tasks use (:func:`.modes.plane_segmenter`,
keyed by model source, backend, instance decoder and quantization), in the worker's task
thread, so a task finds its model loaded instead of loading it itself.  A failed load is
kept on the plugin, not raised (dask would log its traceback on every worker): at the start
of a run it is collected from the workers and stops the run with one message; a restarted
worker whose load failed (out of memory, say) still takes tasks, which load the model as
before and fail their input with the loader's message if it fails again.

dask.distributed's own plugin mechanism is used (no preload scripts or worker options to
configure): it reaches workers of any cluster the run is given, a ``LocalCluster``, a lab
server's ``dask worker`` processes or a SLURM job, and goes away with the run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, WorkerPlugin

from ...errors import SAMError
from . import modes


class ModelPlugin(WorkerPlugin):
    """Loads a batch run's model (and its mode's segmenter) into each worker process.

    Args:
        settings: the run's settings (``model``, ``mode``, ``generator``, ``tiles``,
            ``decoder``, ``quantize``): what the tasks hand to
            :func:`.modes.plane_segmenter`.
        backend: the run's Keras backend.
    """

    def __init__(self, settings: dict[str, Any], backend: str | None) -> None:
        # an image's prompts are not the model's business (and may be many)
        self.settings = {k: v for k, v in settings.items() if k != "prompts"}
        self.backend = backend
        self.name = f"napari-sam-keras-model-{uuid.uuid4().hex[:8]}"
        #: Why this worker's load failed (None: loaded, or not tried yet).
        self.error: str | None = None

    async def setup(self, worker: Any) -> None:
        """Load the model in the worker's task thread (its event loop keeps answering)."""
        executor = getattr(worker, "executors", {}).get("default")
        await asyncio.get_running_loop().run_in_executor(executor, self.load)

    def load(self) -> None:
        """Load the model and its segmenter into this process's cache (once)."""
        try:
            modes.plane_segmenter(self.settings, self.backend)
        except Exception as exc:  # reported by model_plugin, or again by the tasks
            self.error = str(exc) if isinstance(exc, SAMError) else f"{type(exc).__name__}: {exc}"


def setup_error(name: str, dask_worker: Any = None) -> str | None:
    """On a worker (``Client.run``): why the plugin ``name`` could not load the model."""
    plugin = dask_worker.plugins.get(name)
    return getattr(plugin, "error", None)


@contextmanager
def model_plugin(client: Client, settings: dict[str, Any], backend: str | None) -> Iterator[str]:
    """Register a :class:`ModelPlugin` on ``client``'s cluster for a run; its name.

    Returns once every current worker has loaded the model; a model that a worker cannot
    load fails the run here, before any task, with the loader's message.  On leaving, the
    plugin is unregistered (workers that join later load nothing; the workers keep the
    model they loaded, for the next run with the same model).
    """
    plugin = ModelPlugin(settings, backend)
    try:
        try:
            client.register_plugin(plugin, name=plugin.name)
            errors = [e for e in client.run(setup_error, plugin.name).values() if e]
        except Exception as exc:  # e.g. a worker without napari-sam-keras installed
            errors = [f"{type(exc).__name__}: {exc}"]
        if errors:
            raise SAMError(f"a dask worker could not load the model: {errors[0]}")
        yield plugin.name
    finally:
        try:
            client.unregister_worker_plugin(plugin.name)
        except Exception:  # the cluster is gone, or never got it: nothing to undo
            pass
