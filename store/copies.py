"""A copy of the log's database file (a backup, a compacted copy): checked before it is trusted,
and removed with the files SQLite keeps beside it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from aura.store.errors import StoreError

__all__ = ["check_copy", "remove_copy"]


def check_copy(path: Path, what: str) -> tuple[int, int]:
    """`PRAGMA integrity_check` of the copy at `path` (read-only), else StoreError naming it as
    `what`; its (events, last seq)."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            raise StoreError(f"{what} fails integrity_check: {result[:5]}")
        events, last = conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
    finally:
        conn.close()
    return int(events), int(last)


def remove_copy(path: Path) -> None:
    """Remove `path` and its journal, WAL and wal-index, those that exist."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()
