"""One engine per data folder: an exclusive lock on `<data_dir>/aura.lock` while it runs.

Two engines on one folder would each take the other's running jobs for interrupted ones: the
second would append JobInterrupted, resume them and delete the temp files the first one's ffmpeg
is writing. The lock (flock, released by the OS when the process dies, even by SIGKILL) makes
the second one stop at start with a clear message instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from aura.store.errors import StoreError

__all__ = ["LOCK_FILE_NAME", "FolderInUse", "FolderLock"]

LOCK_FILE_NAME = "aura.lock"


class FolderInUse(StoreError):
    """Another engine (another `aura serve`, `aura sample`, a worker) runs on this folder:
    `data_dir`, held by the process whose pid is `holder` ("?" when unknown)."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(
            f"the data folder {data_dir} is in use by another Aura process (pid {holder}): "
            "stop it, use `aura submit` against its server, or choose another --data-dir"
        )
        self.data_dir = data_dir
        self.holder = holder


class FolderLock:
    """Held from `acquire()` to `release()`; the file keeps the holder's pid for the message."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FolderInUse(self.path.parent, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
