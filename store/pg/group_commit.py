"""Group commit on PostgreSQL: appends queued as they come, written in batches (one transaction
each, store/pg/batch.py) on one pooled connection, then settled in order.

INVARIANTS
- One batch in flight per process: appends queued while it commits wait for the next, so a
  batch holds every append that arrived during the previous commit's round trips.
- A batch that fails as a whole is tried again append by append, so only the one at fault
  fails (as SQLite's group commit does).
- A batch whose connection broke before its reply came is looked for in the log first (its
  first row, with the batch's own `ts`): one that committed all the same succeeds, rather
  than being written again (ConcurrencyError) or reported failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
from collections.abc import Callable, Sequence
from time import perf_counter

import asyncpg

from aura.projections.events import ENCODER, Event, Recorded
from aura.store.batch import QueuedAppend, Results
from aura.store.errors import ConcurrencyError, StoreError
from aura.store.group_commit import MAX_BATCH_APPENDS, CommitObserver
from aura.store.pg.batch import BatchWriter, LeasedAppend, LeaseTake
from aura.store.pg.errors import CONNECTION_ERRORS, DB_ERRORS, store_error
from aura.store.pg.leases import Lease

__all__ = ["PgGroupCommit"]

logger = logging.getLogger(__name__)


class PgGroupCommit:
    """The appending side of a PgEventLog: the queue and its flush, batch by batch.

    :param pool: where the writer's connection comes from; None for a read-only log.
    :param on_committed: told of each batch's committed appends, in seq order, before their
        futures settle (the subscriptions' dispatcher).
    """

    def __init__(
        self,
        pool: asyncpg.Pool | None,
        on_committed: Callable[[list[list[Recorded]]], None],
    ) -> None:
        self._write_pool = pool
        self._on_committed = on_committed
        self._pending: list[QueuedAppend] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._oldest_queued = 0.0
        self._writer_conn: asyncpg.Connection | None = None
        self._batches = BatchWriter()
        self._last_written = 0  # the last seq this process committed
        #: names this log in its notifications, which it skips: it tells its own commits itself
        self.origin = secrets.token_hex(8)
        #: told of each batch once settled (metrics); None: nothing is measured
        self.commit_observer: CommitObserver | None = None

    def append_nowait(
        self,
        job_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        after: QueuedAppend | None = None,
        fence: Lease | None = None,
        take: LeaseTake | None = None,
    ) -> QueuedAppend:
        """Queue the append for the next group commit (see EventLog.append_nowait); with a
        `fence`, it commits only while that lease is the job's (else LeaseLost); with a
        `take`, the append of a new job takes its first lease, `Lease(job_id, 1)`."""
        if self._write_pool is None:
            raise StoreError("the log was opened read-only")
        if self._closing:
            raise StoreError("the log is closed")
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        encode = ENCODER.encode
        rows = [(type(e).__name__, e.step_name, e.attempt, encode(e).decode()) for e in events]
        if fence is None and take is None:
            queued = QueuedAppend(job_id, expected_version, rows, events, future, after)
        elif fence is not None and fence.job_id != job_id:
            raise ValueError(f"a fence of job {fence.job_id} on an append of job {job_id}")
        elif take is not None and (expected_version != 0 or fence is not None):
            raise ValueError(f"job {job_id}: only the append that creates a job takes a lease")
        else:
            queued = LeasedAppend(
                job_id, expected_version, rows, events, future, after, fence=fence, take=take
            )
        if not events:
            future.set_result([])
            return queued
        if not self._pending:
            self._oldest_queued = perf_counter()
        self._pending.append(queued)
        if self._flusher is None:
            # a fresh context: the flush serves every appender, so it logs as none of them
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return queued

    async def _drain(self) -> None:
        """Refuse appends from now on and commit those queued so far."""
        self._closing = True
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._release_writer()

    async def _flush(self) -> None:
        try:
            while self._pending:
                queued_at = self._oldest_queued
                batch = self._pending[:MAX_BATCH_APPENDS]
                del self._pending[: len(batch)]
                if self._pending:
                    self._oldest_queued = perf_counter()
                self._settle(batch, await self._commit_batch(batch), queued_at)
        finally:
            self._flusher = None

    async def _commit_batch(self, batch: list[QueuedAppend]) -> Results:
        """The batch in one transaction; if that fails as a whole, each append alone."""
        try:
            return await self._write(batch)
        except Exception as e:
            if len(batch) == 1:
                return [await self._failure(batch[0], e)]
        results: Results = []
        for item in batch:
            (result,) = await self._commit_batch([item])
            item.failed = isinstance(result, Exception)
            results.append(result)
        return results

    async def _write(self, batch: list[QueuedAppend]) -> Results:
        """On the writer's own connection, taken from the pool once and kept (a connection
        given back to the pool costs a reset's round trip); a new one after it drops."""
        assert self._write_pool is not None
        conn = self._writer_conn
        if conn is None or not _usable(conn):
            # a connection the server dropped is back in the pool already (asyncpg releases it)
            conn = self._writer_conn = await self._write_pool.acquire()
        try:
            return await self._batches.write(conn, batch, self.origin)
        except CONNECTION_ERRORS:  # the connection broke, not the batch: it is replaced
            await self._drop_writer(conn)
            results = await self._committed_anyway()
            if results is None:
                raise
            return results

    async def _committed_anyway(self) -> Results | None:
        """The results of the batch whose connection broke, if it committed all the same (its
        reply was lost), asked on another connection; None if not, or if that cannot be told
        (the append then fails as before, though it may have committed)."""
        assert self._write_pool is not None
        try:
            async with self._write_pool.acquire() as conn:
                return await self._batches.committed_anyway(conn)
        except DB_ERRORS as e:
            logger.warning("cannot tell whether a batch whose connection broke committed: %s", e)
            return None

    async def _drop_writer(self, conn: asyncpg.Connection) -> None:
        """Close the writer's connection after it broke (its backend terminated, the network
        cut): asyncpg may still call it open, mid-operation, and refuse every later call on it
        ("another operation is in progress"); the next batch takes a new one."""
        self._writer_conn = None
        assert self._write_pool is not None
        with contextlib.suppress(Exception):
            conn.terminate()
            await self._write_pool.release(conn)

    async def _release_writer(self) -> None:
        """Give the writer's connection back to the pool (the log is closing)."""
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None and self._write_pool is not None and _usable(conn):
            await self._write_pool.release(conn)

    async def _failure(self, item: QueuedAppend, error: Exception) -> StoreError:
        """The error of an append that failed alone: a duplicate (job, version), written by
        a writer that does not take the append lock, is a stale version like any other."""
        if isinstance(error, StoreError):
            return error
        if isinstance(error, asyncpg.UniqueViolationError):
            actual = await self._stored_version(item.job_id)
            return ConcurrencyError(item.job_id, item.expected_version, actual)
        return store_error(error, "append failed")

    async def _stored_version(self, job_id: str) -> int:
        assert self._write_pool is not None
        sql = "SELECT coalesce(max(version), 0) FROM events WHERE job_id = $1"
        try:
            return int(await self._write_pool.fetchval(sql, job_id))
        except DB_ERRORS:
            return -1

    def _settle(self, batch: list[QueuedAppend], results: Results, queued_at: float) -> None:
        """Tell the dispatcher what committed, then settle each append's future."""
        committed = [r for r in results if not isinstance(r, Exception) and r]
        if committed:
            self._last_written = committed[-1][-1].seq
            self._on_committed(committed)
        for item, result in zip(batch, results, strict=True):
            item.after = None
            item.rows = item.events = ()
            future = item.future
            if isinstance(result, Exception):
                item.failed = True
                if not future.done():
                    future.set_exception(result)
            elif not future.done():
                future.set_result(result)
        observer = self.commit_observer
        if observer is not None:
            observer(len(batch), perf_counter() - queued_at)


def _usable(conn: asyncpg.Connection) -> bool:
    """The pooled connection is still ours and open (asyncpg gives a dropped one back to the
    pool itself, after which the proxy refuses every call)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False
