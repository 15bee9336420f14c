"""Atomic files: a result appears whole under its final name, or not at all.

Every write goes to a temp file in the destination's folder (same file system, so the rename is
atomic), is fsynced, renamed with `os.replace` and the folder fsynced. On any failure, a
cancellation included, the temp file is removed. A zero-byte result is refused: nothing
half-written and no zero-byte files is a principle of the design (docs/architecture.md).

`produce(path, accept=...)` hands a temp path to a tool such as ffmpeg and renames it only
after `accept` (e.g. an ffprobe check) has approved the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aura.store.fsync import fsync_folder

__all__ = [
    "TEMP_MARKER",
    "EmptyOutput",
    "commit",
    "produce",
    "temp_path_for",
    "write_bytes",
    "write_text",
]

#: part of every temp file's name; tests look for it to prove nothing was left behind
TEMP_MARKER = ".aura-tmp-"


class EmptyOutput(Exception):
    """A result of zero bytes (or none at all) was refused."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"refused an empty result for {path.name}")
        self.path = path


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temp name next to `path`, keeping its suffix (ffmpeg picks muxers by it)."""
    return path.with_name(f".{path.stem}{TEMP_MARKER}{secrets.token_hex(4)}{path.suffix}")


def commit(temp: Path, path: Path) -> None:
    """fsync `temp`, rename it to `path` and fsync the folder; refuse it if empty."""
    try:
        size = temp.stat().st_size
    except FileNotFoundError:
        raise EmptyOutput(path) from None
    if size == 0:
        raise EmptyOutput(path)
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_folder(path.parent)


def _discard(temp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()


def write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> Path:
    """Write `data` to `path` atomically; raises EmptyOutput for empty data. `mode`: the file's
    permissions (0o600 for a secret), the temp file's from its creation, never wider."""
    if not data:
        raise EmptyOutput(path)
    temp = temp_path_for(path)
    try:
        with open(temp, "xb", opener=None if mode is None else _opener(mode)) as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)  # exactly `mode`, whatever the umask took away
            f.write(data)
        commit(temp, path)
    except BaseException:
        _discard(temp)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def _opener(mode: int) -> Callable[[str, int], int]:
    """An `open` opener creating the file with `mode` (less what the umask removes)."""

    def opener(path: str, flags: int) -> int:
        return os.open(path, flags, mode)

    return opener


@contextlib.asynccontextmanager
async def produce(
    path: Path, *, accept: Callable[[Path], Awaitable[None]] | None = None
) -> AsyncIterator[Path]:
    """Yield a temp path for a tool to write; on success `accept` it, then commit it to `path`.

    `accept` raises to refuse the file (nothing is renamed then). The temp file is removed on
    any failure, including cancellation of the task inside the block.
    """
    temp = temp_path_for(path)
    try:
        yield temp
        if temp.exists() and temp.stat().st_size > 0 and accept is not None:
            await accept(temp)
        # fsync of a whole video: off the event loop, so API calls and streams stay live
        await asyncio.to_thread(commit, temp, path)
    except BaseException:
        _discard(temp)
        raise
