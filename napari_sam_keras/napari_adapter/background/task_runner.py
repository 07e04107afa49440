"""Long work off the GUI thread, shared by both widgets: start, progress, cancel, wait, errors.

A job is a function ``job(progress)``.  It calls ``progress(done, total)`` now
and then, and ``progress.step("computing the image embedding")`` to name what
it is doing; ``progress`` raises :class:`~napari_sam_keras.OperationCancelled`
once the task was cancelled (the core honours the same callback inside its own
loops), so a cancelled job ends early and its result is never written.

:class:`TaskRunner` runs one job at a time for a widget: the step, percent and
time left go to the widget's status line and to a napari progress bar; an
error goes to a notification *and* stays in the status line; callbacks asked
for while a job runs (:meth:`TaskRunner.after`) run when it ends.  Nothing
here processes Qt events inside a caller's callback: the progress bar is
opened from the event loop, never from the code that starts the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer, Signal, Slot

from ...errors import OperationCancelled
from ..widget_parts.notifications import report_outcome
from ..widget_parts.status_line import StatusLine

#: Seconds between two progress repaints on the GUI thread (see :class:`Progress`).
REPORT_INTERVAL = 0.25


class Relay(QObject):
    """Calls ``on_change()`` on the GUI thread when ``changed`` is emitted from any thread."""

    changed = Signal()

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__()
        self._on_change = on_change
        self.changed.connect(self._change)

    @Slot()
    def _change(self) -> None:
        self._on_change()


class _Outcome(QObject):
    """Carries a job's outcome from a plain thread to the GUI thread (a queued signal)."""

    ended = Signal(object)

    def __init__(self, on_end: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_end = on_end
        self.ended.connect(self._end)

    @Slot(object)
    def _end(self, outcome) -> None:
        self._on_end(outcome)


class Progress:
    """What a job reports through: ``progress(done, total)`` and ``progress.step(text)``.

    Thread-safe; raises :class:`OperationCancelled` once cancelled.
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._on_change = on_change
        self.done = 0
        self.total = 0
        self.step_text = ""
        self.started = time.monotonic()
        self._last_report = 0.0
        self._reports = 0

    def __call__(self, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise OperationCancelled("cancelled by the user")
        now = time.monotonic()
        with self._lock:
            if int(total) != self.total:
                self._reports = 0
            self.done, self.total = int(done), int(total)
            self._reports += 1
            # A job may report thousands of times a second: the GUI thread repaints the status
            # and the progress bar at most every REPORT_INTERVAL s (each repaint holds the GIL,
            # and under a software OpenGL rasterizer takes long), and at the end.
            due = now - self._last_report >= REPORT_INTERVAL or self.done >= self.total
            if due:
                self._last_report = now
        if due and self._on_change is not None:
            self._on_change()

    def step(self, text: str) -> None:
        """Name the step the job is in (e.g. ``"slice 3 of 40: generating masks"``)."""
        if self._cancel.is_set():
            raise OperationCancelled("cancelled by the user")
        with self._lock:
            self.step_text = text
        if self._on_change is not None:
            self._on_change()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def fraction(self) -> float | None:
        """Done / total in 0..1, or ``None`` while the total is unknown."""
        with self._lock:
            return min(self.done / self.total, 1.0) if self.total > 0 else None

    def time_left(self) -> float | None:
        """Seconds left, extrapolated from the time so far; ``None`` until it is stable.

        Stable: a tenth of the work done, five reports of the same total and five seconds
        spent (early estimates swing from "27 min" to done 2 s later).
        """
        fraction = self.fraction()
        elapsed = time.monotonic() - self.started
        if fraction is None or fraction < 0.1 or fraction >= 1.0 or elapsed < 5.0:
            return None
        if self._reports < 5:
            return None
        return elapsed * (1.0 - fraction) / fraction


def format_seconds(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``, ``"about 1 h 20 min"``."""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def progress_text(description: str, progress: Progress) -> str:
    """``"SAM: segmenting: computing the image embedding, 40%, about 2 min left"``."""
    parts = [description + (f": {progress.step_text}" if progress.step_text else "")]
    fraction = progress.fraction()
    if fraction is not None:
        parts.append(f"{int(fraction * 100)}%")
    left = progress.time_left()
    if left is not None:
        parts.append(f"{format_seconds(left)} left")
    return ", ".join(parts)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Task:
    """One cancellable job, run in a napari thread worker (:meth:`start`) or inline (:meth:`run`).

    Args:
        job: ``job(progress) -> result``.
        description: what the job does, e.g. ``"SAM: live preview"``.
        on_done: called on the GUI thread with the result.
        on_error: called on the GUI thread with the exception (also for a cancel).
        on_finished: called on the GUI thread after either of them.
        on_progress: called on the GUI thread with the progress text.
        progress_bar: also show a napari progress bar.
    """

    def __init__(
        self,
        job: Callable[[Progress], Any],
        description: str,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        on_progress: Callable[[str], None] | None = None,
        progress_bar: bool = True,
    ) -> None:
        self.job = job
        self.description = description
        self.on_done = on_done
        self.on_error = on_error
        self.on_finished = on_finished
        self.on_progress = on_progress
        self.progress_bar = progress_bar
        self._relay = Relay(self._show_progress)
        self.progress = Progress(self._relay.changed.emit)
        self._pbar = None
        self._updating = False
        self.worker = None
        self.done = False

    # --- progress (GUI thread) ---------------------------------------------------------

    def text(self) -> str:
        """The progress as one line: description, step, percent, time left."""
        return progress_text(self.description, self.progress)

    def _show_progress(self) -> None:
        if self.done:
            return
        text = self.text()
        if self.on_progress is not None:
            self.on_progress(text)
        bar = self._pbar
        if bar is None or self._updating:
            return
        # napari's progress bar may process Qt events while it redraws: this method (or
        # _finish, closing the bar) can run again inside it, so work on a local reference
        self._updating = True
        try:
            bar.set_description(text)
            fraction = self.progress.fraction()
            if fraction is not None and self._pbar is bar:
                bar.update(int(fraction * 100) - int(bar.n))
        finally:
            self._updating = False

    def _open_bar(self) -> None:
        """Open the napari progress bar, from the event loop (see the module docstring)."""
        if self.done or not self.progress_bar or self._pbar is not None:
            return
        from napari.utils import progress

        bar = progress(total=100, desc=self.text())
        if self.done:  # finished while the bar was being opened
            bar.close()
        else:
            self._pbar = bar

    def _close_bar(self) -> None:
        bar, self._pbar = self._pbar, None
        if bar is not None:
            bar.close()

    # --- running -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report."""
        self.progress.cancel()

    @property
    def cancelled(self) -> bool:
        return self.progress.cancelled

    @property
    def running(self) -> bool:
        return self.worker is not None and not self.done

    def _guarded(self):
        try:
            return self.job(self.progress)
        except BaseException as error:
            return _Failure(error)

    def start(self, own_thread: bool = False) -> Task:
        """Run the job in a napari thread worker; callbacks fire on the GUI thread.

        ``own_thread``: in a thread of its own instead of Qt's shared pool
        (background work that may wait a long time must not hold a pool slot).
        """
        if own_thread:
            self._outcome = _Outcome(self._finish)
            self.worker = threading.Thread(
                target=lambda: self._outcome.ended.emit(self._guarded()),
                name=f"napari-sam-keras: {self.description}",
                daemon=True,
            )
        else:
            self.worker = create_worker(self._guarded, _start_thread=False, _ignore_errors=True)
            self.worker.returned.connect(self._finish)
        self.worker.start()
        QTimer.singleShot(0, self._open_bar)
        if self.on_progress is not None:
            self.on_progress(self.text())
        return self

    def _finish(self, outcome) -> None:
        self.done = True
        self._close_bar()
        if not isinstance(outcome, _Failure) and self.cancelled:
            # Cancel pressed after the job's last progress report: its result is not written
            outcome = _Failure(OperationCancelled("cancelled by the user"))
        try:
            if isinstance(outcome, _Failure):
                if self.on_error is not None:
                    self.on_error(outcome.error)
            elif self.on_done is not None:
                self.on_done(outcome)
        finally:
            if self.on_finished is not None:
                self.on_finished()

    def run(self, process_events: bool = True):
        """Run the job in this thread (scripts); returns the result or raises its error.

        With ``process_events`` the GUI stays responsive between progress reports
        (the status updates and the Cancel button works).  Never call it from a
        layer or key callback.
        """
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance() if process_events else None
        last = [0.0]

        def on_change() -> None:
            if app is not None and time.monotonic() - last[0] > 0.1:
                last[0] = time.monotonic()
                self._show_progress()
                app.processEvents()

        self.progress._on_change = on_change
        self.worker = "inline"
        if self.on_progress is not None:
            self.on_progress(self.text())
        try:
            return self.job(self.progress)
        finally:
            self.done = True

    def wait(self, timeout: float = 600.0) -> bool:
        """Block (processing GUI events) until a started job has finished; True if it did."""
        return process_events_until(lambda: self.done, timeout)


def process_events_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Process Qt events until ``condition()`` (scripts and tests only); its last value."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        if app is not None:
            app.processEvents()
        time.sleep(0.005)
    return condition()


class TaskRunner:
    """One job at a time for one widget, with its status line and busy state.

    Args:
        status: the widget's :class:`StatusLine`.
        on_busy: called with ``True`` when a job starts and ``False`` when none runs
            (to enable the Cancel button).
    """

    def __init__(self, status: StatusLine, on_busy: Callable[[bool], None] | None = None) -> None:
        self.status = status
        self.on_busy = on_busy
        self.task: Task | None = None
        self._after: list[Callable[[], None]] = []

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.task is not None

    @property
    def idle(self) -> bool:
        """No job running and none waiting."""
        return self.task is None and not self._after

    def _set_task(self, task: Task | None) -> None:
        self.task = task
        if self.on_busy is not None:
            self.on_busy(task is not None)

    def start(
        self,
        job: Callable[[Progress], Any],
        description: str,
        on_done: Callable[[Any], None],
        progress_bar: bool = True,
    ) -> Task:
        """Start ``job`` in a worker; ``on_done(result)`` runs on the GUI thread.

        Errors and cancels go to the status line (and a notification for errors).
        """
        if self.task is not None:
            raise RuntimeError("a SAM job is running already; use after() to queue")
        task = Task(
            job,
            description,
            on_done=on_done,
            on_error=self.report,
            on_finished=self._finished,
            on_progress=self.status.show,
            progress_bar=progress_bar,
        )
        self._set_task(task)
        self.status.show(task.text())
        return task.start()

    def run(self, job: Callable[[Progress], Any], description: str):
        """Run ``job`` now in this thread (scripts); the result, or ``None`` after an error.

        Errors are reported like :meth:`start`'s.
        """
        if self.task is not None:
            self.task.wait()
        task = Task(job, description, on_progress=self.status.show, progress_bar=False)
        self._set_task(task)
        try:
            result = task.run()
        except BaseException as error:
            self.report(error)
            return None
        finally:
            self._set_task(None)
        self.status.show("")
        return result

    def report(self, error: BaseException) -> None:
        """Show how a job failed: a notification (errors) and the status line (kept)."""
        report_outcome(error)
        self.status.show_outcome(error)

    def _finished(self) -> None:
        task = self.task
        self._set_task(None)
        if (
            task is not None
            and not self.status.error_shown
            and self.status.value.startswith(task.description)
        ):
            self.status.show("")  # on_done left the progress text: the job is over
        self._run_after()

    def _run_after(self) -> None:
        while self.task is None and self._after:
            callback = self._after.pop(0)
            callback()

    def after(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current job has ended (now when idle); no duplicates."""
        if self.task is None:
            callback()
            return
        if not any(callback == queued for queued in self._after):
            self._after.append(callback)

    def cancel(self) -> None:
        """Stop the running job (its result is not written) and drop queued callbacks."""
        self._after.clear()
        if self.task is not None:
            self.task.cancel()

    def wait(self, timeout: float = 600.0) -> bool:
        """Block until no job runs or waits (GUI events keep flowing); True if so."""
        return process_events_until(lambda: self.idle, timeout)
