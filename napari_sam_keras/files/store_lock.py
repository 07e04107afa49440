"""One writer per store: an operating-system file lock beside the store.

A process that writes to a store (an embedding store) first takes the lock
``STORE.lock`` beside it, with the ``filelock`` library (``flock`` on Linux and
macOS, ``LockFileEx`` on Windows).  The operating system releases the lock when
the process ends, however it ends (killed, crashed, machine rebooted), so a lock
is never left stale.  A second process that wants to write the same store is
refused at once with one clear message; reading needs no lock.

Within one process all writers of a store share the lock (it is reentrant), so
the napari widgets and a script in the same session do not refuse each other.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..errors import EmbeddingStoreError
from .write_failures import describe_write_error

LOCK_SUFFIX = ".lock"


class StoreLockedError(EmbeddingStoreError):
    """Another process is writing this store."""


def lock_path(store: str | os.PathLike) -> Path:
    """The lock file of ``store``: ``STORE.lock`` beside it (never inside it)."""
    store = Path(os.path.abspath(store))
    return store.with_name(store.name + LOCK_SUFFIX)


class StoreLock:
    """The write lock of one store, held by this process from :meth:`acquire` to :meth:`release`.

    ``acquire`` and ``release`` may be called several times (they are counted); the lock
    is free again for other processes when every ``acquire`` was released, or when this
    process ends.
    """

    def __init__(self, store: str | os.PathLike) -> None:
        self.store = Path(store)
        self.path = lock_path(store)
        self._mutex = threading.Lock()
        self._held = 0
        self._lock = None

    @property
    def held(self) -> bool:
        return self._held > 0

    def acquire(self) -> None:
        """Take the lock now, or raise :class:`StoreLockedError` (no waiting)."""
        from filelock import FileLock, Timeout

        with self._mutex:
            if self._held:
                self._held += 1
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lock = FileLock(self.path, timeout=0, thread_local=False, is_singleton=True)
                lock.acquire()
            except Timeout:
                raise StoreLockedError(
                    f"Another process is writing the store {self.store} (it holds "
                    f"{self.path.name}): wait for it to finish, or choose another store. "
                    "Nothing was written."
                ) from None
            except OSError as err:
                raise EmbeddingStoreError(
                    f"Cannot lock the store {self.store} for writing: {describe_write_error(err)}"
                ) from err
            self._lock = lock
            self._held = 1

    def release(self) -> None:
        """Give back one :meth:`acquire`; the last one frees the lock."""
        with self._mutex:
            if not self._held:
                return
            self._held -= 1
            if not self._held and self._lock is not None:
                self._lock.release()
                self._lock = None

    def release_all(self) -> None:
        """Free the lock whatever the count (when the store is closed)."""
        with self._mutex:
            if self._held and self._lock is not None:
                self._lock.release()
            self._held = 0
            self._lock = None
