"""Making a file or a folder's entries durable: what a rename-into-place needs on both sides."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_file", "fsync_folder"]


def fsync_file(path: Path) -> None:
    """Flush `path`'s data to the disk."""
    _fsync(path, os.O_RDONLY)


def fsync_folder(folder: Path) -> None:
    """Flush `folder`'s entries to the disk: a file renamed into it survives a power loss."""
    _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
