"""The `jobs` table on PostgreSQL: the job-list read model, written in every append's own
transaction by whichever process appends, and read as store/jobs_table.JobsTable reads it.

INVARIANTS
- Every append transaction writes the rows its events change (store/pg/batch.py), so the rows
  never lag the log, whichever process or machine appended; the position saved with them is
  the last seq applied.
- A table behind the log (new, or cleared) is caught up at open under the append lock, so no
  append commits between the catch-up and the first batch that applies it; a rebuild
  (PgEventLog.rebuild_job_list) clears and folds it again the same way, in one transaction.
  Nothing else ever folds it: there is no background rebuild as on SQLite, and a page is never
  `rebuilding`.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import asyncpg

from aura.projections.events import Recorded
from aura.projections.job import JobStatus
from aura.projections.job_list import ROW_EVENTS, JobRow, apply_row
from aura.store.jobs_table import JOB_LIST, JobPage, ListPosition, UnknownPosition
from aura.store.pg.errors import translated
from aura.store.rows import format_optional_ts, format_ts

__all__ = [
    "PgJobsTable",
    "apply_records",
    "catch_up",
    "changed_rows",
    "row_columns",
    "to_row",
]

_COLUMNS = "job_id, preset, status, attempt, created_utc, started_utc, ended_utc"
_UPSERT = (
    f"INSERT INTO jobs ({_COLUMNS}) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], "
    "$6::text[], $7::text[]) "
    "ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, attempt = excluded.attempt, "
    "started_utc = excluded.started_utc, ended_utc = excluded.ended_utc"
)
_SAVE_POSITION = (
    "INSERT INTO projector_positions (name, last_seq) VALUES ($1, $2) "
    "ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
)
_ORDER = "ORDER BY created_utc DESC, created_seq DESC"
_ROW_TYPES = sorted(t.__name__ for t in ROW_EVENTS)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def to_row(r: Any) -> JobRow:
    """A `jobs` row as read (its first seven columns) to a JobRow."""
    return JobRow(
        job_id=r[0],
        preset=r[1],
        status=JobStatus(r[2]),
        attempt=r[3],
        created_utc=datetime.fromisoformat(r[4]),
        started_utc=_dt(r[5]),
        ended_utc=_dt(r[6]),
    )


def changed_rows(
    existing: dict[str, JobRow], records: builtins.list[Recorded]
) -> dict[str, JobRow]:
    """The rows `records` change, folded from `existing` (the stored rows of their jobs)."""
    rows: dict[str, JobRow | None] = dict(existing)
    changed: dict[str, JobRow] = {}
    for rec in records:
        if type(rec.event) not in ROW_EVENTS:
            continue
        row = rows.get(rec.job_id)
        new = apply_row(row, rec)
        if new is not None and new is not row:
            rows[rec.job_id] = changed[rec.job_id] = new
    return changed


def row_columns(rows: Iterable[JobRow]) -> tuple[builtins.list[Any], ...]:
    """The rows as the columns `unnest` takes (job_id, preset, status, attempt, times)."""
    columns: tuple[builtins.list[Any], ...] = ([], [], [], [], [], [], [])
    for r in rows:
        for column, value in zip(
            columns,
            (
                r.job_id,
                r.preset,
                r.status.value,
                r.attempt,
                format_ts(r.created_utc),
                format_optional_ts(r.started_utc),
                format_optional_ts(r.ended_utc),
            ),
            strict=True,
        ):
            column.append(value)
    return columns


#: reads the log's events after a seq on a connection, at most a page
ReadAfter = Callable[[asyncpg.Connection, int, int], Awaitable[builtins.list[Recorded]]]
#: reads the log's events: `SELECT <the event columns> FROM events` + the clause, with its
#: arguments (PgEventLog's reader, which decodes them)
SelectEvents = Callable[..., Awaitable[builtins.list[Recorded]]]


async def catch_up(conn: asyncpg.Connection, read_after: ReadAfter, page: int) -> int:
    """Fold the events after the saved position into the rows, in the caller's transaction
    (which holds the append lock); the position reached."""
    position = await conn.fetchval(
        "SELECT last_seq FROM projector_positions WHERE name = $1", JOB_LIST
    )
    last = int(position or 0)
    while True:
        records = await read_after(conn, last, page)
        if not records:
            return last
        await apply_records(conn, records)
        last = records[-1].seq


async def apply_records(conn: asyncpg.Connection, records: builtins.list[Recorded]) -> None:
    """Fold a page of the log's events, in seq order, into the rows they change and save the
    position (its last seq), in the caller's transaction."""
    jobs = list({rec.job_id for rec in records})
    found = await conn.fetch(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = any($1)", jobs)
    changed = changed_rows({r[0]: to_row(r) for r in found}, records)
    await conn.execute(_UPSERT, *row_columns(changed.values()))
    await conn.execute(_SAVE_POSITION, JOB_LIST, records[-1].seq)


class PgJobsTable:
    """Reads the `jobs` rows, with the queries of store/jobs_table.JobsTable."""

    def __init__(self, pool: asyncpg.Pool, select: SelectEvents, name: str = JOB_LIST) -> None:
        self._pool = pool
        self._select = select
        self._name = name

    @translated("cannot read the job list")
    async def lag(self) -> int:
        """Events the rows are behind the log, read in one snapshot: 0 unless the table was
        changed behind Aura's back (every append writes its rows in its own transaction)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            last = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
            sql = "SELECT coalesce(max(last_seq), 0) FROM projector_positions WHERE name = $1"
            position = await conn.fetchval(sql, self._name)
        return int(last) - int(position)

    @translated("cannot read the job list")
    async def position(self) -> int:
        sql = "SELECT coalesce(max(last_seq), 0) FROM projector_positions WHERE name = $1"
        return int(await self._pool.fetchval(sql, self._name))

    @translated("cannot read the job list")
    async def get(self, job_id: str) -> JobRow | None:
        found = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = $1", job_id)
        return None if found is None else to_row(found)

    @translated("cannot read the job list")
    async def count(self, status: JobStatus | None = None) -> int:
        if status is None:
            return int(await self._pool.fetchval("SELECT count(*) FROM jobs"))
        sql = "SELECT count(*) FROM jobs WHERE status = $1"
        return int(await self._pool.fetchval(sql, status.value))

    @translated("cannot read the job list")
    async def active_job_ids(self) -> builtins.list[str]:
        sql = (
            "SELECT job_id FROM jobs WHERE status = any($1::text[]) "
            "ORDER BY created_utc, created_seq"
        )
        active = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
        return [r[0] for r in await self._pool.fetch(sql, active)]

    @translated("cannot read the job list")
    async def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        after: ListPosition | None = None,
    ) -> JobPage:
        """Newest first, with the log's last seq read in the same snapshot (see JobsTable)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            where: builtins.list[str] = []
            params: builtins.list[Any] = []
            if status is not None:
                params.append(status.value)
                where.append(f"status = ${len(params)}")
            if after is not None:
                anchor = await conn.fetchrow(
                    "SELECT created_seq, created_utc FROM jobs WHERE job_id = $1", after.job_id
                )
                if anchor is None or anchor[1] != after.created_utc:
                    raise UnknownPosition(after)
                params += [after.created_utc, anchor[0]]
                where.append(f"(created_utc, created_seq) < (${len(params) - 1}, ${len(params)})")
            clause = f"WHERE {' AND '.join(where)} " if where else ""
            params += [limit + 1, offset]
            sql = (
                f"SELECT {_COLUMNS} FROM jobs {clause}{_ORDER} "
                f"LIMIT ${len(params) - 1} OFFSET ${len(params)}"
            )
            found = await conn.fetch(sql, *params)
            last = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events")
        more = 0 < limit < len(found)
        following = ListPosition(found[limit - 1][4], found[limit - 1][0]) if more else None
        return JobPage([to_row(r) for r in found[:limit]], int(last), following)

    async def row_events_after(self, after_seq: int, limit: int) -> builtins.list[Recorded]:
        """Events of every job with seq > `after_seq` whose type can change a row, in seq
        order, at most `limit` (see JobsTable)."""
        where = " WHERE seq > $1 AND type = any($2::text[]) ORDER BY seq LIMIT $3"
        return await self._select(where, after_seq, _ROW_TYPES, limit)

    @translated("cannot read the job list")
    async def recent_step_durations(
        self, preset: str, jobs: int
    ) -> builtins.list[tuple[str, float]]:
        sql = (
            "SELECT e.step, (e.data ->> 'durationSeconds')::float8 FROM "
            "(SELECT job_id FROM jobs WHERE status = $1 AND preset = $2 "
            f"{_ORDER} LIMIT $3) AS j "
            "JOIN events AS e ON e.job_id = j.job_id WHERE e.type = 'StepSucceeded'"
        )
        found = await self._pool.fetch(sql, JobStatus.SUCCEEDED.value, preset, jobs)
        return [(s, float(d)) for s, d in found if s is not None and d is not None]
