"""A Cancel pressed after a job's last progress report still drops its result."""

from __future__ import annotations

import pytest

from napari_sam_keras import OperationCancelled


@pytest.mark.parametrize("own_thread", [False, True])
def test_a_cancel_after_the_last_progress_report_writes_nothing(qtbot, own_thread):
    from napari_sam_keras.napari_adapter.background.task_runner import Task

    done, errors, tasks = [], [], []

    def job(progress):
        progress(1, 1)
        tasks[0].cancel()  # the user presses Cancel while the result is on its way
        return "labels"

    task = Task(job, "SAM: test", on_done=done.append, on_error=errors.append, progress_bar=False)
    tasks.append(task)
    task.start(own_thread=own_thread)
    assert task.wait(60)
    assert done == []
    assert len(errors) == 1 and isinstance(errors[0], OperationCancelled)
