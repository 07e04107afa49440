"""One clear line per problem: the libraries' warnings and log lines kept off the terminal.

tifffile's log lines, dask's "Port 8787 is already in use", TensorFlow's and jax's
notices, or multiprocessing's "leaked semaphore objects" at exit say nothing a user
of a command can act on, and bury the one line that matters.  While a command
runs, :func:`captured` keeps them back: warnings of the libraries and their log
records (WARNING and above) are counted, and one line at the end says how many
there were and from where; ``--verbose`` shows them all as they come.  The
package's own warnings are shown, one line each (``warning: ...``).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

#: A filter for ``$PYTHONWARNINGS`` that child processes (dask workers, multiprocessing's
#: resource tracker) inherit: their "leaked semaphore objects" report at exit is hidden.
CHILD_WARNING_FILTER = "ignore:resource_tracker:UserWarning"
_OURS = "napari_sam_keras"


class Noise:
    """What was kept back: counts per source (logger name or warning module)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.counts: Counter[str] = Counter()

    def ours(self, message: str) -> None:
        print(f"warning: {message}", file=self.stream, flush=True)

    def summary(self) -> str | None:
        """One line about what was hidden, or None when nothing was."""
        if not self.counts:
            return None
        total = sum(self.counts.values())
        where = ", ".join(f"{name} {n}" for name, n in self.counts.most_common(4))
        return (
            f"note: {total} warning(s) or log line(s) of the libraries used were hidden "
            f"({where}); run with --verbose to see them"
        )


class _Keep(logging.Handler):
    def __init__(self, noise: Noise) -> None:
        super().__init__(logging.WARNING)
        self.noise = noise

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] == _OURS:
            self.noise.ours(record.getMessage())
        else:
            self.noise.counts[record.name.split(".")[0]] += 1


def _stream_handlers() -> list[tuple[logging.Logger, logging.Handler, bool]]:
    """(logger, handler, its propagate) for every handler that writes to the terminal."""
    found = []
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                found.append((logger, handler, logger.propagate))
    return found


@contextmanager
def captured(verbose: bool = False, stream=None) -> Iterator[Noise]:
    """Keep the libraries' warnings and log lines back while the block runs (see module).

    With ``verbose`` nothing is changed.  Loggers configured later in the block (a library
    imported there) are caught by the root handler as long as they propagate; those that
    set up their own terminal handler on import are taken over when the block starts.
    """
    noise = Noise(sys.stderr if stream is None else stream)
    if verbose:
        yield noise
        return
    keep = _Keep(noise)
    root = logging.getLogger()
    taken = _stream_handlers()
    for logger, handler, _ in taken:
        logger.removeHandler(handler)
        logger.propagate = True
    root.addHandler(keep)
    previous_env = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [previous_env, CHILD_WARNING_FILTER]))
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        module = getattr(category, "__module__", "") or ""
        if module.split(".")[0] == _OURS or _OURS in os.fspath(filename or ""):
            noise.ours(str(message))
        else:
            noise.counts[_warning_source(filename, category)] += 1

    warnings.showwarning = showwarning
    try:
        yield noise
    finally:
        warnings.showwarning = show
        root.removeHandler(keep)
        for logger, handler, propagate in taken:
            logger.addHandler(handler)
            logger.propagate = propagate
        if previous_env is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = previous_env


def _warning_source(filename: str, category: type) -> str:
    """A short name for where a warning came from (the library's top-level package)."""
    parts = os.fspath(filename or "").replace("\\", "/").split("/")
    if "site-packages" in parts:
        index = parts.index("site-packages")
        if index + 1 < len(parts):
            return parts[index + 1].removesuffix(".py")
    return getattr(category, "__name__", "warning")
