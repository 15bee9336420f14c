"""WAL checkpoints beside the writer, so that appends never pay for one inside their commit.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold, stalling that
append and every append queued behind it for milliseconds (an fsync of the database file). A
PASSIVE checkpoint on another connection runs beside the writer and takes no lock a writer
waits on; once every frame is copied, the next commit starts the WAL over from its beginning,
so it stays small. The writer's own checkpoint is left as a backstop past WAL_HARD_LIMIT_PAGES.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import aiosqlite

from aura.store.connections import connect
from aura.store.errors import StoreError

__all__ = [
    "CHECKPOINT_COMMITS",
    "CHECKPOINT_ROWS",
    "WAL_HARD_LIMIT_PAGES",
    "WAL_RESTART_PAGES",
    "Checkpoints",
]

logger = logging.getLogger(__name__)

#: a background checkpoint starts after this many commits or rows, whichever comes first; each
#: ends in an fsync of the database file that delays the commits made meanwhile, so they are rare
CHECKPOINT_COMMITS = 1000
CHECKPOINT_ROWS = 20_000
#: WAL pages (16 MiB) past which a background checkpoint holds commits back for a moment to
#: finish, so that the WAL starts over (see `Checkpoints._run`)
WAL_RESTART_PAGES = 4000
#: WAL pages (40 MiB) past which the writer checkpoints inside a commit, if the background
#: checkpoints cannot keep up (SQLite's default is 1000)
WAL_HARD_LIMIT_PAGES = 10_000


class Checkpoints:
    """The checkpoints of one log: counted commits start one in the background now and then.

    :param writer_lock: held while the writer connection is in use; the second pass of a
        checkpoint holds it to keep commits back.
    """

    def __init__(self, writer_lock: asyncio.Lock) -> None:
        self._writer_lock = writer_lock
        self._conn: aiosqlite.Connection | None = None  # None: read-only, or not open yet
        self._task: asyncio.Task[None] | None = None
        self._commits = 0
        self._rows = 0

    async def open(self, database: str) -> None:
        """Open the checkpoints' own connection (a read-only log has none)."""
        self._conn = await connect(database)

    def count(self, rows: int) -> None:
        """A group commit of `rows` rows is done: start a checkpoint if one is due."""
        self._commits += 1
        self._rows += rows
        due = self._commits >= CHECKPOINT_COMMITS or self._rows >= CHECKPOINT_ROWS
        if due and self._task is None and self._conn is not None:
            self._commits = self._rows = 0
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Copy the WAL's frames into the database beside the writer, then the few committed
        meanwhile with commits held back (queued appends wait; the loop does not), so that the
        WAL is all copied and the next commit starts it over. Under steady appends a checkpoint
        beside the writer never catches up with it: the WAL would grow to WAL_HARD_LIMIT_PAGES
        and the writer would checkpoint inside a commit, stalling the loop for every frame
        left and an fsync."""
        try:
            frames, _ = await self.checkpoint()
            if frames >= WAL_RESTART_PAGES:
                async with self._writer_lock:
                    await self.checkpoint()
        except (StoreError, sqlite3.Error, ValueError) as e:  # busy, I/O, or a closed connection
            logger.warning("background checkpoint: %s", e)
        finally:
            self._task = None

    async def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database now, beside the writer; (WAL frames, copied)."""
        if self._conn is None:
            raise StoreError("the log was opened read-only")
        try:
            rows = await self._conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:
            raise StoreError(f"WAL checkpoint failed: {e}") from e
        _busy, frames, copied = next(iter(rows))
        return int(frames), int(copied)

    async def finish(self) -> None:
        """Wait for the checkpoint under way, if any."""
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
