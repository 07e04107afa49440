"""Writing files so that no reader ever sees half of one, and no input is ever replaced.

Every file the project writes goes through :func:`atomic_write`: the content is
written to a temporary name in the destination's folder (unique per process
and thread) and renamed over the destination only when complete, so an
interruption leaves the old file or the new one, never part of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SAMError


class OutputExistsError(SAMError):
    """The output file exists (or is one of the inputs) and overwriting was not asked for."""


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (hard links and ``./x`` vs ``x`` included)."""
    a, b = Path(a), Path(b)
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False
) -> Path:
    """Refuse an output that is an input, or that exists unless ``overwrite``."""
    path = Path(path)
    for source in inputs:
        if same_file(path, source) or Path(os.path.abspath(path)) == Path(os.path.abspath(source)):
            raise OutputExistsError(
                f"the output {path} is the input file {source}: choose another --out "
                "(the input is never overwritten)"
            )
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} exists: choose another --out, or give --overwrite to replace it"
        )
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder, not a file")
    return path


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary file keeps ``path``'s suffix (writers pick the format from
    it) unless ``suffix`` is given.  On an exception it is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
