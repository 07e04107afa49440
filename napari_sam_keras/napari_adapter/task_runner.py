"""Long work off the GUI thread: a napari ``thread_worker`` with a progress bar and cancel.

A job is a function ``job(report)``; it calls ``report(done, total)`` now and
then.  ``report`` raises :class:`~napari_sam_keras.OperationCancelled` once
:meth:`Task.cancel` was called, which the core also honours from inside its
own progress callbacks, so a cancelled job ends early and its result is
never written.  All results and errors come back on the GUI thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress
from qtpy.QtCore import QObject, Signal, Slot

from ..errors import OperationCancelled

Report = Callable[[int, int], None]


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread.

    The signals are connected to this object's own slots, and the object lives
    in the GUI thread, so emitting from the worker queues the call there.
    """

    progressed = Signal(int, int)
    described = Signal(str)

    def __init__(self, on_progress, on_description) -> None:
        super().__init__()
        self._on_progress = on_progress
        self._on_description = on_description
        self.progressed.connect(self._progress)
        self.described.connect(self._description)

    @Slot(int, int)
    def _progress(self, done: int, total: int) -> None:
        self._on_progress(done, total)

    @Slot(str)
    def _description(self, text: str) -> None:
        self._on_description(text)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Task:
    """One cancellable job, run in a napari thread worker (:meth:`start`) or inline (:meth:`run`).

    Args:
        job: ``job(report) -> result``; runs in a worker thread for :meth:`start`.
        description: the progress bar's text.
        on_done: called on the GUI thread with the result.
        on_error: called on the GUI thread with the exception (including
            :class:`OperationCancelled`).
        on_finished: called on the GUI thread after either of them.
    """

    def __init__(
        self,
        job: Callable[[Report], Any],
        description: str,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        self.job = job
        self.description = description
        self.on_done = on_done
        self.on_error = on_error
        self.on_finished = on_finished
        self._cancel = threading.Event()
        self._relay = _Relay(self._show_progress, self._show_description)
        self._pbar: progress | None = None
        self.worker = None
        self.done = False
        self._last_events = 0.0

    # --- progress ---------------------------------------------------------------------

    def report(self, done: int, total: int) -> None:
        """Progress callback for the job (any thread); raises once cancelled."""
        if self._cancel.is_set():
            raise OperationCancelled("cancelled by the user")
        self._relay.progressed.emit(int(done), int(total))

    def describe(self, text: str) -> None:
        """Change the progress bar's text (any thread)."""
        self._relay.described.emit(text)

    def _show_progress(self, done: int, total: int) -> None:
        if self._pbar is None:
            return
        if total != self._pbar.total:
            self._pbar.total = max(int(total), 0)
        delta = int(done) - int(self._pbar.n)
        if delta:
            self._pbar.update(delta)

    def _show_description(self, text: str) -> None:
        if self._pbar is not None:
            self._pbar.set_description(text)

    def _open_bar(self) -> None:
        self._pbar = progress(total=0, desc=self.description)

    def _close_bar(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    # --- running ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self.worker is not None and not self.done

    def _guarded(self):
        try:
            return self.job(self.report)
        except BaseException as error:
            return _Failure(error)

    def start(self) -> Task:
        """Run the job in a napari thread worker; callbacks fire on the GUI thread."""
        self._open_bar()
        self.worker = create_worker(self._guarded, _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(self._finish)
        self.worker.start()
        return self

    def _finish(self, outcome) -> None:
        self.done = True
        self._close_bar()
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
        (the progress bar updates and the Cancel button works).
        """
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance() if process_events else None

        def report(done: int, total: int) -> None:
            if app is not None and time.monotonic() - self._last_events > 0.1:
                self._last_events = time.monotonic()
                self._show_progress(done, total)
                app.processEvents()
            self.report(done, total)

        self._open_bar()
        self.worker = "inline"
        try:
            return self.job(report)
        finally:
            self.done = True
            self._close_bar()

    def wait(self, timeout: float = 600.0) -> bool:
        """Block (processing GUI events) until a started job has finished; True if it did."""
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        end = time.monotonic() + timeout
        while not self.done and time.monotonic() < end:
            if app is not None:
                app.processEvents()
            time.sleep(0.01)
        return self.done
