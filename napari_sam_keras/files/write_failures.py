"""One clear line for a write that failed: a full disk, a quota, a folder without permission.

Every file is written to a temporary name and renamed when complete
(:mod:`.atomic_write`), so a failed write leaves the old file or none, never part
of one; these messages say so, and what to do.
"""

from __future__ import annotations

import errno

#: errno values meaning "no room to write" (a full disk, a quota, a file-size limit).
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: errno values meaning "not allowed to write here".
NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk or a missing permission (not a bug of ours)."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE | NO_PERMISSION


def describe_write_error(exc: OSError) -> str:
    """One line for an ``OSError`` of a read or write, naming the file when known."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in NO_SPACE:
        return (
            f"no space left to write{where}: {exc.strerror}; nothing was left half-written "
            "(the previous file, if any, is unchanged); free some space and run again"
        )
    if exc.errno in NO_PERMISSION:
        return (
            f"no permission to write{where}: {exc.strerror}; nothing was changed; choose a "
            "folder you can write to"
        )
    return str(exc)
