"""The SSE bench's two logs (bench/sse.py): where the server's log lives for one run, and the
floor's commit of each event of case (c) in the same database.

An event is committed before any client sees it. Where every event is its own commit (case
(c)), the floor pays that commit too: it publishes each event only after a raw insert and
commit of the same row (the store's `events` schema) in the same kind of database:
- SQLite: `sqlite3` on the event loop's thread (as the store's group commit at NORMAL), WAL,
  at the server's `synchronous`, one statement per event in autocommit;
- PostgreSQL: asyncpg, one `INSERT` per event in autocommit (its own transaction), on a pool
  of connections, so that concurrent events' commits wait on the server, not on one another.

On PostgreSQL the server's log is a new schema of the bench's database (bench/_pg.py) each run,
and the server runs no job (`runs_jobs` off, as `aura serve --no-worker`): its runner would
otherwise claim the bench's Running jobs as interrupted ones.
"""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Protocol

import asyncpg

from aura.engine.config.settings import Settings
from aura.store.errors import StoreError
from aura.store.log import DB_FILE_NAME, Durability
from aura.store.pg.schema import migrate as pg_migrate
from aura.store.rows import format_ts
from aura.store.schema import migrate as sqlite_migrate

from ._common import INSERT, OUT, fresh_dir
from ._pg import PG_ERRORS, bench_database, new_schema, server_shown

__all__ = ["Backend", "Committer", "PgBackend", "SqliteBackend", "open_pg_backend"]

_PG_INSERT = (
    "INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)"
)
#: the floor's connections on PostgreSQL (asyncpg's default pool size)
_PG_POOL = 10


class Committer(Protocol):
    """The floor's raw insert and commit of one event's row."""

    async def commit(
        self, seq: int, job_id: str, version: int, ts: datetime, data: str
    ) -> None: ...

    async def close(self) -> None: ...


class Backend(Protocol):
    name: str
    #: what a failing database raises (a failed figure, not a crash)
    errors: tuple[type[BaseException], ...]
    #: why the backend cannot run at all (its server unreachable), else None
    failure: str | None

    async def settings(self) -> Settings:
        """The server's settings for one run: a fresh, empty log."""
        ...

    async def committer(self) -> Committer:
        """The floor's raw commit, into a fresh `events` table of the same database."""
        ...


class _SqliteCommitter:
    def __init__(self, durability: Durability) -> None:
        path = fresh_dir("sse-floor") / DB_FILE_NAME
        self.conn = sqlite3.connect(path, isolation_level=None)  # autocommit: a commit each
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={durability.value}")
        sqlite_migrate(self.conn)

    async def commit(self, seq: int, job_id: str, version: int, ts: datetime, data: str) -> None:
        row = (seq, job_id, version, "StepProgressed", "render", 1, format_ts(ts), data)
        self.conn.execute(INSERT, row)

    async def close(self) -> None:
        self.conn.close()


class SqliteBackend:
    name = "sqlite"
    errors: tuple[type[BaseException], ...] = ()
    failure: str | None = None

    async def settings(self) -> Settings:
        return Settings(data_dir=fresh_dir("sse-aura"))

    async def committer(self) -> Committer:
        # at the `synchronous` of the server's log (the settings' durability)
        return _SqliteCommitter(Settings(data_dir=OUT / "sse-aura").durability)


class _PgCommitter:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def commit(self, seq: int, job_id: str, version: int, ts: datetime, data: str) -> None:
        await self.pool.execute(
            _PG_INSERT, seq, job_id, version, "StepProgressed", "render", 1, ts, data
        )

    async def close(self) -> None:
        await self.pool.close()


class PgBackend:
    name = "postgresql"
    errors: tuple[type[BaseException], ...] = (*PG_ERRORS, StoreError)

    def __init__(self, database_url: str | None, failure: str | None = None) -> None:
        self.database_url = database_url
        self.failure = failure
        self._names = itertools.count()

    def _url(self) -> str:
        if self.database_url is None:
            raise OSError(self.failure)
        return self.database_url

    async def settings(self) -> Settings:
        url = await new_schema(self._url(), f"sse_aura_{next(self._names)}")
        return Settings(data_dir=fresh_dir("sse-aura-pg"), database_url=url, runs_jobs=False)

    async def committer(self) -> Committer:
        url = await new_schema(self._url(), f"sse_floor_{next(self._names)}")
        pool = await asyncpg.create_pool(url, min_size=_PG_POOL, max_size=_PG_POOL)
        try:
            async with pool.acquire() as conn:
                await pg_migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return _PgCommitter(pool)


async def open_pg_backend(stack: AsyncExitStack) -> PgBackend:
    """The PostgreSQL backend on a new bench database (dropped when `stack` closes); one that
    fails every run with the reason if the server cannot be reached."""
    try:
        url = await stack.enter_async_context(bench_database("aura_bench_sse"))
    except PG_ERRORS as e:
        return PgBackend(None, f"no PostgreSQL at {server_shown()}: {type(e).__name__}: {e}")
    return PgBackend(url)
