"""One SQLite writer at a time across processes, queued in the kernel.

SQLite lets one connection write at a time; another that wants to write polls
with ``busy_timeout``, sleeping 1, 2, 5, 10 ... ms between tries, and so idles
while the lock is free.  Several server processes writing one file (``traceway
server --workers N``) queue instead on an exclusive ``flock`` of a file beside
the database, which wakes the next writer as soon as the lock is released.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

__all__ = ["WriterLock"]


class WriterLock:
    """An exclusive advisory lock on ``<database>-writer.lock``.

    Not for threads: a store's own thread lock is taken first.
    """

    def __init__(self, database_path: Path) -> None:
        self._path = database_path.with_name(database_path.name + "-writer.lock")
        self._fd: int | None = None

    def __enter__(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
