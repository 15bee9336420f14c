"""The append-only event log: one SQLite table, group-committed appends, pushed subscriptions.

`EventLog` opens and closes the log, reads it and subscribes to it. Its appends are queued and
committed in batches by store/group_commit.py, each batch written in one transaction by
store/batch.py; store/checkpoint.py checkpoints the WAL beside the writer.

INVARIANTS
- Subscribers (store/subscriptions.py) are woken by the append itself, right after its commit,
  never by a timer. Only writers in another process need `poll_interval`.
- `attach`, `detach` and `run_on_writer` hold `_writer_lock`, so they act on the writer
  connection between two group commits, never inside one.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from aura.projections.events import Event, Recorded
from aura.store.batch import InlineProjection, QueuedAppend
from aura.store.checkpoint import WAL_HARD_LIMIT_PAGES
from aura.store.connections import connect, on_thread, run_with_connection
from aura.store.errors import DatabaseMissing, StoreError
from aura.store.group_commit import GroupCommit
from aura.store.rows import SELECT, decode_rows
from aura.store.schema import migrate
from aura.store.subscriptions import Subscriptions, Watcher, follow

# QueuedAppend and InlineProjection: the types of `append_nowait` and `attach`
__all__ = [
    "DB_FILE_NAME",
    "PAGE_SIZE",
    "Durability",
    "EventLog",
    "InlineProjection",
    "QueuedAppend",
]

DB_FILE_NAME = "aura.db"
#: rows a backlog read fetches per query
PAGE_SIZE = 1000

T = TypeVar("T")

#: waits before trying again to turn a new database to WAL while another opener holds it
_WAL_RETRY_DELAYS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


async def _enable_wal(conn: aiosqlite.Connection) -> None:
    """WAL mode (it stays in the file). Turning a new file to WAL needs an exclusive lock, which
    SQLite does not wait for while another opener holds a shared one (both would wait forever):
    it answers "database is locked" at once, so this tries again, a few seconds at most."""
    for delay in (*_WAL_RETRY_DELAYS, None):
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if delay is None or "locked" not in str(e):
                raise
        await asyncio.sleep(delay)


class Durability(enum.StrEnum):
    """SQLite's `synchronous` setting for the WAL.

    NORMAL (the default) makes every acknowledged append survive a crash of the process (even
    SIGKILL); only a power loss or OS crash can drop the last commits, never corrupt the log.
    FULL also fsyncs the WAL on every commit, surviving power loss, at the cost of one fsync per
    group commit.
    """

    NORMAL = "NORMAL"
    FULL = "FULL"


class EventLog(GroupCommit):
    """The job log in `<data_dir>/aura.db`. Open with `await EventLog.open(data_dir)`."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection | None,
        reader: aiosqlite.Connection,
        poll_interval: float | None,
        commit_on_loop: bool = False,
    ) -> None:
        super().__init__(writer, Subscriptions(), commit_on_loop=commit_on_loop)
        self.path = path
        self._reader = reader
        self._poll_interval = poll_interval
        self._closed = False

    # ---- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        data_dir: Path | str,
        *,
        durability: Durability = Durability.NORMAL,
        readonly: bool = False,
        poll_interval: float | None = None,
    ) -> EventLog:
        """Open (creating and migrating unless `readonly`) the log in `data_dir`."""
        path = Path(data_dir) / DB_FILE_NAME
        if readonly:
            if not path.is_file():
                raise DatabaseMissing(f"no database at {path}")
            # as_uri: a folder named `copy #1` or `what?` must not end the file name early
            reader = await connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
            return cls(path, None, reader, poll_interval)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the data folder {path.parent}: {e}") from e
        writer = await connect(str(path))
        try:
            await _enable_wal(writer)
            await writer.execute(f"PRAGMA synchronous={Durability(durability).value}")
            # Checkpoints run on their own connection (store/checkpoint.py); the writer
            # checkpoints inside a commit only past WAL_HARD_LIMIT_PAGES, under sustained writing.
            await writer.execute(f"PRAGMA wal_autocheckpoint={WAL_HARD_LIMIT_PAGES}")
            await run_with_connection(writer, migrate)
            reader = await connect(str(path))
        except sqlite3.Error as e:  # not a database, a full disk, ...
            await writer.close()
            raise StoreError(f"cannot open the log {path}: {e}") from e
        except BaseException:
            await writer.close()
            raise
        log = cls(path, writer, reader, poll_interval, durability == Durability.NORMAL)
        await log._checkpoints.open(str(path))
        assert log._batches is not None
        log._batches.last_seq = await log.max_seq()
        return log

    async def close(self) -> None:
        """Finish the appends queued so far (later ones are refused), end every subscription
        and close the connections."""
        if self._closing:
            return
        await self._drain()
        await self._checkpoints.finish()
        self._closed = True
        self._subscriptions.close()
        await self._checkpoints.close()
        if self._writer is not None:
            await self._writer.close()  # the last connection to close checkpoints the WAL
        await self._reader.close()

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closing(self) -> bool:
        """close() has begun (or is done): appends are refused from then on."""
        return self._closing

    # ---- appending (queued and committed by GroupCommit) --------------------------------

    def append(
        self, job_id: str, events: Sequence[Event], expected_version: int
    ) -> asyncio.Future[list[Recorded]]:
        """Append `events` to the job atomically, after `expected_version` (0 for a new job);
        await the result: the stored events.

        Raises ConcurrencyError when the job's last version is not `expected_version`. Appends
        waiting at once are committed together in one transaction (group commit).
        """
        # A future, not a coroutine: one frame less per append. A caller canceled while
        # awaiting it cancels only the future: the append stays queued or in flight, commits
        # (or fails) with its batch and reaches subscribers; settling skips a done future.
        # (asyncio.shield would do the same, at a cost on every append.)
        return self.append_nowait(job_id, events, expected_version).future

    @property
    def unreachable_since(self) -> datetime | None:
        """None: the file is the database (a disk that refuses writes is StoreFull's)."""
        return None

    @property
    def last_seq(self) -> int:
        """The log's last seq as this process knows it: found at open, then each commit's."""
        return 0 if self._batches is None else self._batches.last_seq

    async def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database now, beside the writer; (WAL frames, copied).
        Appends start one in the background now and then (store/checkpoint.py)."""
        return await self._checkpoints.checkpoint()

    # ---- reading ------------------------------------------------------------------------

    async def read(self, job_id: str, after_version: int = 0) -> list[Recorded]:
        """The job's events after `after_version`, in order."""
        rows = await self._fetch(
            SELECT + " WHERE job_id = ? AND version > ? ORDER BY version", (job_id, after_version)
        )
        return decode_rows(rows)

    async def read_job_after_seq(
        self, job_id: str, after_seq: int, limit: int = PAGE_SIZE
    ) -> list[Recorded]:
        """The job's events with seq > `after_seq`, at most `limit` (one hop to the reader)."""

        def read(conn: sqlite3.Connection) -> list[Any]:
            found = conn.execute(
                "SELECT job_id, version FROM events WHERE seq = ?", (after_seq,)
            ).fetchone()
            if found is not None and found[0] == job_id:  # by version: the (job_id, version) index
                sql = SELECT + " WHERE job_id = ? AND version > ? ORDER BY version LIMIT ?"
                return conn.execute(sql, (job_id, found[1], limit)).fetchall()
            sql = SELECT + " WHERE job_id = ? AND seq > ? ORDER BY version LIMIT ?"
            return conn.execute(sql, (job_id, after_seq, limit)).fetchall()

        return decode_rows(await self.run_on_reader(read))

    async def tail(self, after_seq: int = 0, limit: int = PAGE_SIZE) -> list[Recorded]:
        """Events of every job with seq > `after_seq`, in seq order, at most `limit`."""
        sql = SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?"
        rows = await self._fetch(sql, (after_seq, limit))
        return decode_rows(rows)

    async def max_seq(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(seq), 0) FROM events", ())
        return int(rows[0][0])

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as e:
            raise StoreError(f"read failed: {e}") from e

    # ---- inline projections and functions on a connection ------------------------------

    async def attach(self, projection: InlineProjection) -> None:
        """Bring `projection` up to date with the log, then keep it in every append's
        transaction. Catching up and attaching happen on the writer's thread, between two
        group commits, so no event is applied twice or missed."""
        if self._writer is None or self._batches is None:
            raise StoreError("the log was opened read-only")
        async with self._writer_lock:
            await on_thread(self._writer, self._batches.attach, projection)

    async def detach(self, projection: InlineProjection) -> None:
        if self._batches is not None and not self._closed:
            async with self._writer_lock:
                self._batches.detach(projection)

    async def run_on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer's thread, between group commits (read models use it)."""
        if self._writer is None:
            raise StoreError("the log was opened read-only")
        try:
            async with self._writer_lock:
                return await run_with_connection(self._writer, fn)
        except sqlite3.Error as e:
            raise StoreError(str(e)) from e

    async def run_on_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the reader's thread."""
        try:
            return await run_with_connection(self._reader, fn)
        except sqlite3.Error as e:
            raise StoreError(f"read failed: {e}") from e

    # ---- subscribing --------------------------------------------------------------------

    async def subscribe(
        self, after_seq: int = 0, job_id: str | None = None
    ) -> AsyncGenerator[Recorded, None]:
        """Yield stored events after `after_seq` (of one job, or all), then live ones, forever.

        Ends when the log is closed. Close the generator to stop (`contextlib.aclosing`).
        """

        async def read_page(last: int) -> list[Recorded]:
            if job_id is None:
                return await self.tail(last, PAGE_SIZE)
            return await self.read_job_after_seq(job_id, last, PAGE_SIZE)

        sub = self._subscriptions.add(job_id)
        try:
            async for rec in follow(sub, read_page, PAGE_SIZE, after_seq, self._poll_interval):
                yield rec
        finally:
            self._subscriptions.remove(sub)

    def watch(self, job_id: str, watcher: Watcher) -> int:
        """Call `watcher.on_events` with every later append of the job made through this log,
        right after its commit (then `on_commit` once per commit); returns the log's last seq
        now. Every event of the job after that seq reaches the watcher (maybe along with a few
        at or before it: skip by seq).

        Unlike `subscribe`, no task wakes per event; appends by another process are not seen.
        """
        if self._closed:
            raise StoreError("the log is closed")
        self._subscriptions.watch(job_id, watcher)
        return self.last_seq

    def unwatch(self, job_id: str, watcher: Watcher) -> None:
        self._subscriptions.unwatch(job_id, watcher)

    @property
    def subscriber_count(self) -> int:
        """Subscriptions and watchers."""
        return len(self._subscriptions)
