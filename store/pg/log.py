"""The append-only event log on PostgreSQL: EventLog's API on asyncpg, for several processes and
machines sharing one database.

INVARIANTS
- Global order without a skipped event: seqs are handed out under one advisory lock held until
  the commit is visible (store/pg/batch.py), so they are gapless and become visible in order.
- Subscribers and watchers hear of every commit, this process's or another's, exactly once and
  in seq order (store/pg/dispatch.py), woken by the append itself or by LISTEN/NOTIFY, never by a
  timer; the listening connection is re-established when it drops and the log is read from the
  last seq told (store/pg/listener.py), so nothing committed meanwhile is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from aura.projections.events import DECODER, Event, Recorded
from aura.store.errors import CorruptEvent, StoreError
from aura.store.jobs_table import JOB_LIST
from aura.store.pg.batch import APPEND_LOCK, CHANNEL, NEWS, LeaseTake
from aura.store.pg.dispatch import Dispatcher
from aura.store.pg.errors import DB_ERRORS, store_error
from aura.store.pg.group_commit import PgGroupCommit
from aura.store.pg.jobs_table import PgJobsTable, catch_up
from aura.store.pg.leases import Lease, PgLeases
from aura.store.pg.listener import Listener
from aura.store.pg.schema import migrate, schema_version
from aura.store.subscriptions import Subscriptions, Watcher, follow

__all__ = ["CLOSE_DISPATCH_TIMEOUT", "PAGE_SIZE", "PgEventLog"]

#: rows a backlog read fetches per query
PAGE_SIZE = 1000
#: seconds close() waits for the subscribers to be told of what was committed
CLOSE_DISPATCH_TIMEOUT = 5.0
#: connections of a log's pool (reads, and the writer's batches); the listener has its own
POOL_SIZE = 4

_SELECT = "SELECT seq, job_id, version, ts, data::text FROM events"
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError)


def _decode(rows: list[Any]) -> list[Recorded]:
    decode = DECODER.decode
    records = []
    for seq, job_id, version, ts, data in rows:
        try:
            records.append(Recorded(seq, job_id, version, ts, decode(data)))
        except _DECODE_ERRORS as e:
            raise CorruptEvent(seq, str(e)) from e
    return records


async def _read_after(conn: asyncpg.Connection, after: int, limit: int) -> list[Recorded]:
    sql = _SELECT + " WHERE seq > $1 ORDER BY seq LIMIT $2"
    return _decode(list(await conn.fetch(sql, after, limit)))


async def _catch_up_job_list(conn: asyncpg.Connection, *, rebuild: bool = False) -> int:
    """Bring the `jobs` rows up to the log (from nothing if `rebuild`), holding the append lock
    (no append meanwhile); the position reached."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        if rebuild:
            await conn.execute("DELETE FROM jobs")
            await conn.execute("DELETE FROM projector_positions WHERE name = $1", JOB_LIST)
        return await catch_up(conn, _read_after, PAGE_SIZE)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset of a connection given back: only what asyncpg does before it (roll an
    open transaction back). The log's pooled connections keep no session state (the listener
    has a connection of its own; nothing SETs; the schema's session lock is unlocked where it
    is taken), and the default reset (`RESET ALL; UNLISTEN *; ...`) costs each read a round
    trip more."""


class PgEventLog(PgGroupCommit):
    """The job log in a PostgreSQL database. Open with `await PgEventLog.open(dsn)`."""

    def __init__(self, dsn: str, pool: asyncpg.Pool, readonly: bool) -> None:
        self._subscriptions = Subscriptions()
        self._dispatcher = Dispatcher(self._subscriptions, self._read_for_dispatch, 0)
        super().__init__(None if readonly else pool, self._dispatcher.committed_here)
        self.dsn = dsn
        self.readonly = readonly
        self._pool = pool
        self._listener = Listener(dsn, CHANNEL, self._notified, self._listening)
        #: told of another process's commit that queued a job (created or retried one), with
        #: its last seq; a worker claims then (none: nobody is told)
        self.on_news: Callable[[int], None] | None = None
        self._closed = False

    # ---- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(cls, dsn: str, *, readonly: bool = False) -> PgEventLog:
        """Open (migrating unless `readonly`) the log in the database `dsn` names."""
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=POOL_SIZE, reset=_keep_session
            )
        except DB_ERRORS as e:
            raise store_error(e, "cannot open the log") from e
        try:
            async with pool.acquire() as conn:
                if readonly:
                    if await schema_version(conn) == 0:
                        raise StoreError("no Aura log in this database")
                else:
                    await migrate(conn)
                    await _catch_up_job_list(conn)
            log = cls(dsn, pool, readonly)
            await log._listener.start()
        except DB_ERRORS as e:
            await pool.close()
            raise store_error(e, "cannot open the log") from e
        except BaseException:
            await pool.close()
            raise
        return log

    async def close(self) -> None:
        """Finish the appends queued so far (later ones are refused), tell the subscribers,
        end every subscription and close the connections."""
        if self._closed:
            return
        await self._drain()
        await self._dispatcher.finish(CLOSE_DISPATCH_TIMEOUT)
        self._closed = True
        self._subscriptions.close()
        await self._listener.close()
        await self._pool.close()

    async def __aenter__(self) -> PgEventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def unreachable_since(self) -> datetime | None:
        return self._listener.down_since

    async def _listening(self) -> None:
        """A LISTEN is in place (at open, or after a dropped connection): whatever committed
        before it is found by the log's last seq (news among it, for all this log knows)."""
        last_seq = await self.max_seq()
        self._dispatcher.committed_elsewhere(last_seq)
        if self.on_news is not None:
            self.on_news(last_seq)

    def _notified(self, payload: str) -> None:
        origin, _, rest = payload.partition(" ")
        if origin == self.origin:  # this log's own commits are told as they settle
            return
        seq, news, _ = rest.partition(NEWS)
        self._dispatcher.committed_elsewhere(int(seq))
        if news and self.on_news is not None:
            self.on_news(int(seq))

    @property
    def jobs_table(self) -> PgJobsTable:
        """The job list, written in every append's transaction."""
        return PgJobsTable(self._pool, self._select)

    async def rebuild_job_list(self) -> int:
        """Drop the job list's rows and fold the whole log into them again, holding the append
        lock meanwhile; the position reached."""
        if self.readonly:
            raise StoreError("the log was opened read-only")
        try:
            async with self._pool.acquire() as conn:
                return await _catch_up_job_list(conn, rebuild=True)
        except DB_ERRORS as e:
            raise store_error(e, "cannot rebuild the job list") from e

    @property
    def leases(self) -> PgLeases:
        """The jobs' leases, which workers claim, renew and release."""
        return PgLeases(self._pool)

    @property
    def listener_pid(self) -> int | None:
        """The server process of the listening connection (tests cut it)."""
        return self._listener.backend_pid

    @property
    def listener_connections(self) -> int:
        """Listening connections made so far: 1, plus one per reconnection."""
        return self._listener.connections

    # ---- appending ----------------------------------------------------------------------

    def append(
        self,
        job_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        fence: Lease | None = None,
        take: LeaseTake | None = None,
    ) -> asyncio.Future[list[Recorded]]:
        """Append `events` to the job atomically, after `expected_version` (see EventLog);
        with a `fence`, only while that lease is the job's (else LeaseLost); with a `take`,
        the new job's first lease is taken in the same commit."""
        return self.append_nowait(job_id, events, expected_version, fence=fence, take=take).future

    @property
    def last_seq(self) -> int:
        """The log's last seq as this process knows it (its commits, and others' notified)."""
        dispatcher = self._dispatcher
        return max(dispatcher.known, dispatcher.dispatched, self._last_written)

    # ---- reading ------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except DB_ERRORS as e:
            raise store_error(e, "read failed") from e

    async def _select(self, where: str, *args: object) -> list[Recorded]:
        return _decode(await self._fetch(_SELECT + where, *args))

    async def read(self, job_id: str, after_version: int = 0) -> list[Recorded]:
        """The job's events after `after_version`, in order."""
        sql = _SELECT + " WHERE job_id = $1 AND version > $2 ORDER BY version"
        return _decode(await self._fetch(sql, job_id, after_version))

    async def read_job_after_seq(
        self, job_id: str, after_seq: int, limit: int = PAGE_SIZE
    ) -> list[Recorded]:
        """The job's events with seq > `after_seq`, at most `limit`."""
        sql = _SELECT + " WHERE job_id = $1 AND seq > $2 ORDER BY version LIMIT $3"
        return _decode(await self._fetch(sql, job_id, after_seq, limit))

    async def tail(self, after_seq: int = 0, limit: int = PAGE_SIZE) -> list[Recorded]:
        """Events of every job with seq > `after_seq`, in seq order, at most `limit`."""
        sql = _SELECT + " WHERE seq > $1 ORDER BY seq LIMIT $2"
        return _decode(await self._fetch(sql, after_seq, limit))

    async def _read_for_dispatch(self, after_seq: int) -> list[Recorded]:
        return await self.tail(after_seq, PAGE_SIZE)

    async def max_seq(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(seq), 0) FROM events")
        return int(rows[0][0])

    # ---- subscribing --------------------------------------------------------------------

    async def subscribe(
        self, after_seq: int = 0, job_id: str | None = None
    ) -> AsyncGenerator[Recorded, None]:
        """Yield stored events after `after_seq` (of one job, or all), then live ones of every
        process, forever. Ends when the log is closed."""

        async def read_page(last: int) -> list[Recorded]:
            if job_id is None:
                return await self.tail(last, PAGE_SIZE)
            return await self.read_job_after_seq(job_id, last, PAGE_SIZE)

        sub = self._subscriptions.add(job_id)
        told = self._dispatcher.dispatched  # in the same step as the add: nothing told between
        try:
            async for rec in follow(sub, read_page, PAGE_SIZE, after_seq, None, told):
                yield rec
        finally:
            self._subscriptions.remove(sub)

    def watch(self, job_id: str, watcher: Watcher) -> int:
        """Call `watcher` with every later append of the job, by any process, in seq order;
        returns the last seq told so far (see EventLog.watch)."""
        if self._closed:
            raise StoreError("the log is closed")
        self._subscriptions.watch(job_id, watcher)
        return self._dispatcher.dispatched

    def unwatch(self, job_id: str, watcher: Watcher) -> None:
        self._subscriptions.unwatch(job_id, watcher)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)
