"""Writing files so that no reader ever sees half of one, and no input is ever replaced.

Every file the project writes goes through :func:`atomic_write`: the content is
written to a temporary name in the destination's folder (unique per process
and thread) and renamed over the destination only when complete, so an
interruption leaves the old file or the new one, never part of one.
"""

from __future__ import annotations

import glob
import os
import shutil
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


def _usual_mode(path: Path, full: int) -> None:
    """Give a temporary file (0600) or folder (0700) the mode a plain ``open``/``mkdir``
    would have given it (``full`` less the umask), so others can read the output."""
    os.chmod(path, full & ~_umask())


def _umask() -> int:
    try:  # Linux: read it, without setting it (os.umask sets it for every thread)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


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
        _usual_mode(tmp_path, 0o666)
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, tmp, str(tmp_path)):
            exc.filename = str(path)  # name the file the user asked for, not our temporary
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; rename it to ``path`` when the block succeeds.

    For outputs that are folders (OME-Zarr).  The temporary folder is named like
    :func:`atomic_write`'s temporary files, so :func:`leftover_partials` finds it after a
    crash.  An existing ``path`` is moved aside first and removed once the new one is in place,
    so a reader sees the old folder, the new one or none, never a half-written one.
    """
    path = Path(path)
    tmp = partial_directory(path)
    try:
        yield tmp
        _usual_mode(tmp, 0o777)
        old = None
        if path.exists():
            old = Path(
                tempfile.mkdtemp(
                    prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent
                )
            )
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def partial_directory(path: str | os.PathLike) -> Path:
    """A new hidden folder beside ``path``, named like :func:`atomic_write`'s temporaries:
    work in progress for ``path`` that :func:`remove_leftover_partials` removes after a crash."""
    path = Path(path)
    return Path(
        tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    )


def leftover_partials(path: str | os.PathLike) -> list[Path]:
    """Temporary files or folders of :func:`atomic_write` / :func:`atomic_directory` for
    ``path`` that an interrupted process (killed, machine gone) left behind."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    # tempfile names are prefix + 8 random characters + suffix
    pattern = f".{glob.escape(path.stem)}.????????.partial{glob.escape(path.suffix)}"
    return sorted(path.parent.glob(pattern))


def remove_leftover_partials(path: str | os.PathLike) -> int:
    """Delete :func:`leftover_partials` of ``path``; return how many were removed.

    Only for outputs that no other running process is writing.
    """
    count = 0
    for leftover in leftover_partials(path):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        count += 1
    return count
