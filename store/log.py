"""The append-only event log: one SQLite table, group-committed appends, pushed subscriptions.

INVARIANTS
- One writer per process: every append goes through the flush (`_flush_on_loop`, or the
  `_flush` task), one batch at a time, so seqs are handed out and subscribers are notified in
  commit order.
- At NORMAL durability a group commit runs on the event loop's own thread: a WAL commit that
  does not fsync takes tens of microseconds, less than the hop to aiosqlite's thread and back
  (about 50-100 us here). At FULL (one fsync per commit) it runs on the writer's aiosqlite thread.
  `_writer_lock` keeps the two from ever using the writer connection at once.
- Subscribers (store/subscriptions.py) are woken by the append itself, right after its commit,
  never by a timer. Only writers in another process need `poll_interval`.
- Inline projections are applied in the append's own transaction, wherever it commits.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import itertools
import logging
import sqlite3
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite
import msgspec

from aura.projections.events import ENCODER, Event, Recorded
from aura.store.connections import connect, on_thread
from aura.store.errors import (
    ConcurrencyError,
    CorruptEvent,
    DatabaseMissing,
    StoreError,
    StoreFull,
)
from aura.store.rows import INSERT, SELECT, Row, decode_rows, decode_rows_skipping, format_ts
from aura.store.schema import migrate
from aura.store.subscriptions import Subscriptions, Watcher, follow

__all__ = ["DB_FILE_NAME", "Durability", "EventLog", "InlineProjection", "QueuedAppend"]

logger = logging.getLogger(__name__)

DB_FILE_NAME = "aura.db"
#: appends waiting at once beyond this are left for the next transaction
MAX_BATCH_APPENDS = 512
#: rows a backlog read fetches per query
PAGE_SIZE = 1000
#: a background checkpoint starts after this many commits or rows, whichever comes first. Each
#: one ends in an fsync of the database file, which delays the commits made meanwhile; every
#: 1000 commits instead of every 100 cut the p99 of bench sse (c) from 0.84 to 0.69 ms. The
#: WAL then peaks at about 1000 commits of a few 4 KiB pages each.
CHECKPOINT_COMMITS = 1000
CHECKPOINT_ROWS = 20_000
#: WAL pages (16 MiB) past which a background checkpoint holds commits back for a moment to
#: finish, so that the WAL starts over (see `_background_checkpoint`)
WAL_RESTART_PAGES = 4000
#: WAL pages (40 MiB) past which the writer checkpoints inside a commit, if the background
#: checkpoints cannot keep up (SQLite's default is 1000)
WAL_HARD_LIMIT_PAGES = 10_000
#: events an inline projection folds per transaction while it catches up
CATCH_UP_PAGE = 10_000
#: jobs whose last version the writer remembers; past it, the oldest are forgotten (a job
#: forgotten is looked up once at its next append), so a long-running log's memory is bounded
VERSION_CACHE_JOBS = 100_000

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


def _left_out(error: CorruptEvent, row: Row) -> None:
    """A row the read models leave out: one bad row (or an event type of a newer build) must
    not stop those of every other job."""
    logger.error("%s (job %s); left out of the read models", error, row[1])


def append_failed(error: BaseException) -> StoreError:
    """The StoreError of a failed append: StoreFull when SQLite found the disk full."""
    full = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return (StoreFull if full else StoreError)(f"append failed: {error}")


class Durability(enum.StrEnum):
    """SQLite's `synchronous` setting for the WAL.

    NORMAL (the default) makes every acknowledged append survive a crash of the process (even
    SIGKILL); only a power loss or OS crash can drop the last commits, never corrupt the log.
    FULL also fsyncs the WAL on every commit, surviving power loss, at the cost of one fsync per
    group commit.
    """

    NORMAL = "NORMAL"
    FULL = "FULL"


class InlineProjection(Protocol):
    """A read model kept in the append's own transaction, so it never lags the log.

    `apply` runs inside the append's open transaction (see INVARIANTS for the thread), after the
    batch's rows are inserted; it must only write its own tables. Exactly one of `committed`
    (make the cached state of the last `apply` permanent) or `forget` (drop every cache: rolled
    back, or another connection wrote) follows.
    """

    def position(self, conn: sqlite3.Connection) -> int:
        """The last seq this projection has applied, as saved in its tables."""
        ...

    def apply(self, conn: sqlite3.Connection, records: list[Recorded]) -> None: ...

    def committed(self) -> None: ...

    def forget(self) -> None: ...


class QueuedAppend(msgspec.Struct):
    """An append waiting for its group commit (`EventLog.append_nowait`): `future` settles with
    its records or its error."""

    job_id: str
    expected_version: int
    rows: Sequence[tuple[str, str | None, int, str]]  # type, step, attempt, data
    events: Sequence[Event]
    future: asyncio.Future[list[Recorded]]
    #: an append queued before this one by the same writer: this one commits only if it did
    after: QueuedAppend | None = None
    failed: bool = False


class EventLog:
    """The job log in `<data_dir>/aura.db`. Open with `await EventLog.open(data_dir)`."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection | None,
        reader: aiosqlite.Connection,
        poll_interval: float | None,
        commit_on_loop: bool = False,
    ) -> None:
        self.path = path
        self._writer = writer
        self._commit_on_loop = commit_on_loop
        self._writer_lock = asyncio.Lock()  # group commits and functions run on the writer
        self._reader = reader
        self._poll_interval = poll_interval
        self._pending: list[QueuedAppend] = []
        self._flush_due = False  # a flush is scheduled: a loop callback or the flusher task
        self._flusher: asyncio.Task[None] | None = None
        self._versions: dict[str, int] = {}  # job -> last version, valid while data_version holds
        self._data_version: int | None = None
        self._max_seq: int | None = None  # the log's last seq, valid while data_version holds
        self._subscriptions = Subscriptions()
        self._projections: list[InlineProjection] = []  # touched under _writer_lock only
        self._checkpointer: aiosqlite.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._commits_since_checkpoint = 0
        self._rows_since_checkpoint = 0
        self._closed = False
        self._closing = False  # close() has begun: appends are refused from then on
        self.last_seq = 0

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
            # Checkpoints run on their own connection (see checkpoint()); the writer checkpoints
            # inside a commit only past WAL_HARD_LIMIT_PAGES, under sustained heavy writing.
            await writer.execute(f"PRAGMA wal_autocheckpoint={WAL_HARD_LIMIT_PAGES}")
            await on_thread(writer, migrate, writer._conn)
            reader = await connect(str(path))
        except sqlite3.Error as e:  # not a database, a full disk, ...
            await writer.close()
            raise StoreError(f"cannot open the log {path}: {e}") from e
        except BaseException:
            await writer.close()
            raise
        log = cls(path, writer, reader, poll_interval, durability == Durability.NORMAL)
        log._checkpointer = await connect(str(path))
        log.last_seq = await log.max_seq()
        return log

    async def close(self) -> None:
        """Finish the appends queued so far (later ones are refused), end every subscription
        and close the connections."""
        if self._closing:
            return
        self._closing = True
        if self._pending and self._commit_on_loop:
            self._flush_on_loop()  # now, not after the connections are gone
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        if self._checkpoint_task is not None:
            await self._checkpoint_task
        self._closed = True
        self._subscriptions.close()
        if self._checkpointer is not None:
            await self._checkpointer.close()
        if self._writer is not None:
            await self._writer.close()  # the last connection to close checkpoints the WAL
        await self._reader.close()

    async def __aenter__(self) -> EventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- appending ----------------------------------------------------------------------

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
        # (or fails) with its batch and reaches subscribers; `_write` skips settling a done
        # future. (asyncio.shield did the same at about 3 us more per append.)
        return self.append_nowait(job_id, events, expected_version).future

    def append_nowait(
        self,
        job_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        after: QueuedAppend | None = None,
    ) -> QueuedAppend:
        """Queue the append for the next group commit and return it at once (await its future).

        Appends commit in the order they were queued, so a writer may queue its next append,
        expecting the version this one will reach, before this one has committed: passed as
        `after`, this one then commits only if that one did (else StoreError), even when
        another writer happened to bring the job to the expected version meanwhile.
        """
        if self._writer is None:
            raise StoreError("the log was opened read-only")
        if self._closing:
            raise StoreError("the log is closed")
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        encode = ENCODER.encode
        rows = []
        for e in events:  # a loop, not a comprehension: no frame per call (most carry one event)
            rows.append((type(e).__name__, e.step_name, e.attempt, encode(e).decode()))
        queued = QueuedAppend(job_id, expected_version, rows, events, future, after)
        if not events:
            future.set_result([])
            return queued
        self._pending.append(queued)
        if not self._flush_due:
            self._flush_due = True
            if self._commit_on_loop:  # in this loop turn, after every append made in it
                asyncio.get_running_loop().call_soon(self._flush_on_loop)
            else:
                self._flusher = asyncio.create_task(self._flush())
        return queued

    def _flush_on_loop(self) -> None:
        """At NORMAL durability: commit what is queued, on the loop's thread, now."""
        if self._writer_lock.locked():  # a function runs on the writer's thread: queue behind
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush())
            return
        self._flush_due = False
        # No garbage collection from the commit to the last frame written and future settled:
        # a collection its allocations make due runs right after, when nothing committed waits
        # for its readers. (Collections take 0.1-1 ms here, as long as a few commits.)
        collecting = gc.isenabled()
        gc.disable()
        try:
            while self._pending:
                batch = self._take_batch()
                self._settle(batch, self._commit_batch(batch))
        finally:
            if collecting:
                gc.enable()

    async def _flush(self) -> None:
        """At FULL durability (or behind a function on the writer's thread): commit what is
        queued, batch after batch, on the writer's thread."""
        assert self._writer is not None
        writer = self._writer
        try:
            while self._pending:
                batch = self._take_batch()
                async with self._writer_lock:
                    if self._commit_on_loop:
                        results = self._commit_batch(batch)
                    else:
                        try:
                            results = await on_thread(writer, self._commit_batch, batch)
                        except Exception as e:  # the connection itself failed: every one did
                            results = [append_failed(e)] * len(batch)
                self._settle(batch, results)
        finally:
            self._flusher = None
            self._flush_due = False

    def _take_batch(self) -> list[QueuedAppend]:
        batch = self._pending[:MAX_BATCH_APPENDS]
        del self._pending[: len(batch)]
        return batch

    def _commit_batch(self, batch: list[QueuedAppend]) -> list[list[Recorded] | Exception]:
        """Commit the batch in one transaction; if that fails as a whole, each append alone,
        so only the one at fault fails. Each result: the append's records, or its error."""
        try:
            return self._write_batch(batch)
        except Exception as e:
            if len(batch) == 1:
                return [e if isinstance(e, StoreError) else append_failed(e)]
        results: list[list[Recorded] | Exception] = []
        for item in batch:
            (result,) = self._commit_batch([item])
            item.failed = isinstance(result, Exception)  # for the appends chained after it
            results.append(result)
        return results

    def _settle(self, batch: list[QueuedAppend], results: list[list[Recorded] | Exception]) -> None:
        """Notify who listens of what committed (their writes go out first: that is the
        latency clients see), then settle each append's future with its own result or error."""
        subscriptions = self._subscriptions
        if not subscriptions.idle:
            notify = subscriptions.notify
            for result in results:
                if not isinstance(result, Exception):
                    notify(result)
            subscriptions.commit_done()
        rows = 0
        for item, result in zip(batch, results, strict=True):
            # settled: nothing needs the chain behind it or its rows any more (a writer keeps
            # its last append until the next; what it holds lives on for the collector to walk)
            item.after = None
            item.rows = item.events = ()
            future = item.future
            if isinstance(result, Exception):
                item.failed = True
                if not future.done():
                    future.set_exception(result)
            else:
                rows += len(result)
                if not future.done():
                    future.set_result(result)
        self._count_commit(rows)

    def _count_commit(self, rows: int) -> None:
        self._commits_since_checkpoint += 1
        self._rows_since_checkpoint += rows
        due = (
            self._commits_since_checkpoint >= CHECKPOINT_COMMITS
            or self._rows_since_checkpoint >= CHECKPOINT_ROWS
        )
        if due and self._checkpoint_task is None and self._checkpointer is not None:
            self._commits_since_checkpoint = self._rows_since_checkpoint = 0
            self._checkpoint_task = asyncio.create_task(self._background_checkpoint())

    async def _background_checkpoint(self) -> None:
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
            self._checkpoint_task = None

    async def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database now, beside the writer; (WAL frames, copied).

        SQLite's automatic checkpoint runs inside the commit that crosses its threshold,
        stalling that append and every append queued behind it for milliseconds (an fsync of
        the database file). A PASSIVE checkpoint on another connection runs beside the writer
        and takes no lock a writer waits on; once every frame is copied, the next commit
        starts the WAL over from its beginning, so it stays small.
        """
        if self._checkpointer is None:
            raise StoreError("the log was opened read-only")
        try:
            rows = await self._checkpointer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:
            raise StoreError(f"WAL checkpoint failed: {e}") from e
        _busy, frames, copied = next(iter(rows))
        return int(frames), int(copied)

    def _write_batch(self, batch: list[QueuedAppend]) -> list[list[Recorded] | Exception]:
        """One transaction, one commit for the whole batch (on the loop or the writer's thread)."""
        assert self._writer is not None
        conn: sqlite3.Connection = self._writer._conn
        try:
            return self._attempt(conn, batch, exact=False)
        except sqlite3.IntegrityError:
            # A job created before (by us or another process) or a stale cached version: forget
            # cached versions and retry once, looking every job's version up.
            self._forget()
            return self._attempt(conn, batch, exact=True)

    def _attempt(
        self, conn: sqlite3.Connection, batch: list[QueuedAppend], *, exact: bool
    ) -> list[list[Recorded] | Exception]:
        """One transaction for the batch; whatever fails, it is rolled back (never left open).
        An IntegrityError stays itself (the caller may retry); other errors are StoreErrors."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            return self._insert_batch(conn, batch, exact=exact)
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.IntegrityError) and not exact:
                raise
            raise append_failed(e) from e

    def _insert_batch(
        self, conn: sqlite3.Connection, batch: list[QueuedAppend], *, exact: bool
    ) -> list[list[Recorded] | Exception]:
        """Insert the batch's rows in the open transaction and commit.

        Unless `exact`, a job missing from the version cache that the append expects to be new
        (expected_version 0) is not looked up: its row at version 1 can only be inserted if the
        job has no events, so UNIQUE(job_id, version) checks it, and an IntegrityError makes
        `_write_batch` retry the batch with `exact`.
        """
        data_version = self._validate_caches(conn)
        seq = self._max_seq
        if seq is None:
            seq = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        now = datetime.now(UTC)
        ts = format_ts(now)
        results: list[list[Recorded] | Exception] = []
        rows: list[tuple[Any, ...]] = []
        appended: list[Recorded] = []
        tentative: dict[str, int] = {}
        versions = self._versions
        failed: set[int] = set()  # ids of this batch's appends that fail
        add_row, record = rows.append, Recorded
        for item in batch:
            job_id = item.job_id
            after = item.after
            if after is not None and (after.failed or id(after) in failed):
                results.append(StoreError(f"job {job_id}: an append queued before this one failed"))
                failed.add(id(item))
                continue
            # The job's version: as this batch left it, else cached, else new (see above) or
            # looked up.
            current = tentative.get(job_id)
            if current is None:
                current = versions.get(job_id)
            if current is None:
                new_job = item.expected_version == 0 and not exact
                current = 0 if new_job else self._stored_version(conn, job_id)
            if current != item.expected_version:
                results.append(ConcurrencyError(job_id, item.expected_version, current))
                failed.add(id(item))
                tentative[job_id] = current
                continue
            recorded = []
            # rows and events have one entry per event by construction (append_nowait)
            for event, (type_name, step, attempt, data) in zip(item.events, item.rows):  # noqa: B905
                seq += 1
                current += 1
                add_row((seq, job_id, current, type_name, step, attempt, ts, data))
                recorded.append(record(seq, job_id, current, now, event))  # type: ignore[arg-type]
            tentative[job_id] = current
            results.append(recorded)
            appended += recorded
        self._commit(conn, rows, appended)
        self._remember_versions(tentative)
        self._max_seq = seq
        # Our own commit leaves data_version unchanged; reading it again here could absorb
        # another connection's commit made since, without dropping the cache.
        self._data_version = data_version
        if rows:
            self.last_seq = seq
        return results

    def _remember_versions(self, versions: dict[str, int]) -> None:
        cache = self._versions
        cache.update(versions)
        excess = len(cache) - VERSION_CACHE_JOBS
        if excess > 0:  # the oldest remembered first: dicts keep insertion order
            for job_id in list(itertools.islice(cache, excess)):
                del cache[job_id]

    def _validate_caches(self, conn: sqlite3.Connection) -> int:
        """Drop what is cached about the log if another connection committed since our last."""
        data_version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        if data_version != self._data_version:
            self._forget()
            self._data_version = data_version
        return data_version

    def _forget(self) -> None:
        self._versions.clear()
        self._max_seq = None
        for projection in self._projections:
            projection.forget()

    def _stored_version(self, conn: sqlite3.Connection, job_id: str) -> int:
        sql = "SELECT coalesce(max(version), 0) FROM events WHERE job_id = ?"
        version: int = conn.execute(sql, (job_id,)).fetchone()[0]
        return version

    def _commit(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], appended: list[Recorded]
    ) -> None:
        """Insert the rows, let the inline projections apply them, commit."""
        try:
            conn.executemany(INSERT, rows)
            if appended:
                for projection in self._projections:
                    projection.apply(conn, appended)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._forget()
            raise
        for projection in self._projections:
            projection.committed()

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

    async def job_version(self, job_id: str) -> int:
        rows = await self._fetch(
            "SELECT coalesce(max(version), 0) FROM events WHERE job_id = ?", (job_id,)
        )
        return int(rows[0][0])

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as e:
            raise StoreError(f"read failed: {e}") from e

    # ---- inline projections -------------------------------------------------------------

    async def attach(self, projection: InlineProjection) -> None:
        """Bring `projection` up to date with the log, then keep it in every append's
        transaction. Catching up and attaching happen on the writer's thread, between two
        group commits, so no event is applied twice or missed."""
        if self._writer is None:
            raise StoreError("the log was opened read-only")
        async with self._writer_lock:
            await on_thread(self._writer, self._catch_up, projection)

    async def detach(self, projection: InlineProjection) -> None:
        if self._writer is not None and not self._closed:
            async with self._writer_lock:
                self._projections.remove(projection)

    def _catch_up(self, projection: InlineProjection) -> None:
        assert self._writer is not None
        conn: sqlite3.Connection = self._writer._conn
        position = projection.position(conn)
        while True:
            page = conn.execute(
                SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?", (position, CATCH_UP_PAGE)
            ).fetchall()
            if not page:
                break
            records = decode_rows_skipping(page, _left_out)
            conn.execute("BEGIN IMMEDIATE")
            try:
                projection.apply(conn, records)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                projection.forget()
                raise
            projection.committed()
            position = page[-1][0]
        self._projections.append(projection)

    async def run_on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer's thread, between group commits (read models use it)."""
        if self._writer is None:
            raise StoreError("the log was opened read-only")
        try:
            async with self._writer_lock:
                return await on_thread(self._writer, fn, self._writer._conn)
        except sqlite3.Error as e:
            raise StoreError(str(e)) from e

    async def run_on_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the reader's thread."""
        try:
            return await on_thread(self._reader, fn, self._reader._conn)
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
    def closing(self) -> bool:
        """close() has begun (or is done): appends are refused from then on."""
        return self._closing

    @property
    def subscriber_count(self) -> int:
        """Subscriptions and watchers."""
        return len(self._subscriptions)
