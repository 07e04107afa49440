"""The batch on dask workers: every worker, a restarted one too, loads the model before it
takes work (the worker plugin), and every mode runs there as in one process.

A real ``LocalCluster`` (a worker process under a nanny), shared by the tests of this module
(starting a worker process that imports Keras costs seconds to a minute): its worker is
killed with SIGKILL (as the kernel's out-of-memory killer or a lost node would) while a
batch runs, and the nanny starts a new one. Each task reports whether the model was already
in its process's cache when it started (``BatchSummary.cold_tasks``) and each process how
often it loaded it.
"""

from __future__ import annotations

import logging
import os
import signal

import numpy as np
import pytest
import tifffile
from helpers import write_cell_images

from napari_sam_keras import cli
from napari_sam_keras.errors import SAMError
from napari_sam_keras.files.batch_files import read_summary
from napari_sam_keras.segmentation.batch import segment_batch

#: Fast generator settings that keep masks (the random model's scores are low).
OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of one worker process (one thread), as ``--workers 1`` makes it
    (shared by the tests of this module: starting one takes seconds)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


def test_a_killed_workers_tasks_run_on_a_model_its_restart_loaded_first(
    cluster, tiny_network, tiny_checkpoint, tmp_path
):
    """The worker is killed after the first image; the nanny restarts it; the images it
    held are retried, and every task (on the first process and on the restarted one) finds
    the model loaded: each process loaded it once, at the plugin's setup."""
    cluster, client = cluster
    write_cell_images(tmp_path / "in", 4)
    expected = tmp_path / "in-process"  # (the workers find its converted weights cached)
    assert segment_batch(tmp_path / "in", expected, model=tiny_network, **OPTIONS).ok
    (first_pid,) = client.run(os.getpid).values()
    killed = []

    def kill_after_the_first_image(event):
        if event.row is not None and not killed:
            os.kill(first_pid, signal.SIGKILL)
            killed.append(event.row["input"])

    out = tmp_path / "workers"
    summary = segment_batch(tmp_path / "in", out, model=tiny_checkpoint,
                            scheduler=cluster.scheduler_address,
                            progress=kill_after_the_first_image, **OPTIONS)  # fmt: skip
    assert killed and summary.ok, summary.rows
    for path in sorted(expected.glob("*-labels.tif")):
        np.testing.assert_array_equal(tifffile.imread(out / path.name), tifffile.imread(path))
    workers = {row["worker"] for row in summary.rows}
    pids = {int(worker.split(":")[1]) for worker in workers}
    assert first_pid in pids and len(pids) == 2, workers  # the restarted worker did the rest
    assert summary.model_loads == dict.fromkeys(workers, 1)
    assert summary.cold_tasks == []  # no task loaded the model, none waited for a load
    # the run's plugin is gone: a worker joining later loads nothing
    assert not any(name.startswith("napari-sam-keras") for name in _plugins(client))


def test_a_model_the_workers_cannot_load_fails_the_run_before_any_task(cluster, tmp_path):
    """The plugin's setup fails on the worker: one clear error, no input segmented."""
    cluster, client = cluster
    write_cell_images(tmp_path / "in", 1)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(SAMError) as caught:
        segment_batch(tmp_path / "in", tmp_path / "out", model=broken,
                      scheduler=cluster.scheduler_address, **OPTIONS)  # fmt: skip
    assert "broken.pth" in str(caught.value)
    assert not list((tmp_path / "out").glob("*-labels.tif"))
    assert not any(name.startswith("napari-sam-keras") for name in _plugins(client))


def test_concept_mode_on_a_worker_gives_the_in_process_labels(
    cluster, tiny_sam3, tiny_concept_model, tmp_path, capsys
):
    """``batch --mode concept --scheduler ADDRESS``: the worker loads the tiny SAM 3 from its
    Hugging Face folder (the batch hands it the folder, never a loaded model) and writes the
    labels of the in-process run, pixel for pixel."""
    cluster, _ = cluster
    write_cell_images(tmp_path / "in", 2, shape=(60, 90))
    boxes = [(8, 6, 38, 30), (52, 24, 84, 54)]  # the shapes of the other SAM 3 tests
    concept = {"text": "cell", "exemplars": boxes, "exemplar_labels": [1, 0], "score_threshold": 0}
    expected = tmp_path / "in-process"
    assert segment_batch(tmp_path / "in", expected, model=tiny_concept_model, mode="concept",
                         concept=concept).ok  # fmt: skip
    status = cli.main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "worker"),
                       "--mode", "concept", "--model", str(tiny_sam3[0]), "--text", "cell",
                       "--exemplar", "8,6,38,30", "--negative-exemplar", "52,24,84,54",
                       "--score-threshold", "0", "--scheduler", cluster.scheduler_address])  # fmt: skip
    assert status == 0, capsys.readouterr()
    written = sorted(expected.glob("*-labels.tif"))
    assert len(written) == 2
    for path in written:
        labels = tifffile.imread(path)
        assert labels.max() > 0
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "worker" / path.name), labels)
    rows = read_summary(tmp_path / "worker" / "summary.csv")
    assert [row["status"] for row in rows] == ["done", "done"]
    assert all(row["worker"] and not row["worker"].endswith(f":{os.getpid()}") for row in rows)


def _plugins(client) -> set[str]:
    """The worker plugins the scheduler hands to workers that join."""
    return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins)))
