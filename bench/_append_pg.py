"""Append case (a) on PostgreSQL: PgEventLog's group commit against raw asyncpg.

50 appender tasks, each appending one JobCreated at a time to a new job, as case (a) on SQLite.
Every batch ours commits writes the events and, in the same transaction (as every PostgreSQL
log does), the job list's rows they change, its position and a NOTIFY. The baselines write
exactly the rows ours wrote, read back from ours, in one transaction per batch, the batches
being those our group commit formed (one batch shares one `ts`), each into the same schema
(store/pg/schema.py: UNIQUE (job_id, version), the triggers) in a schema of the same database:
- the same rows: `executemany` of the events, `executemany` of the job-list rows (the same
  upsert), the position (judged);
- events only: `executemany` of the events (info: what the job list costs ours is in it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, NamedTuple

import asyncpg

from aura.projections.events import Event
from aura.store.jobs_table import JOB_LIST
from aura.store.pg.log import PgEventLog
from aura.store.pg.schema import migrate

from ._common import job_created, median
from ._pg import new_schema

__all__ = ["PgAppendRun", "concurrent_pg"]

_INSERT = (
    "INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)"
)
_COLUMNS = "job_id, preset, status, attempt, created_utc, started_utc, ended_utc"
_UPSERT_JOB = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, attempt = excluded.attempt, "
    "started_utc = excluded.started_utc, ended_utc = excluded.ended_utc"
)
_SAVE_POSITION = (
    "INSERT INTO projector_positions (name, last_seq) VALUES ($1, $2) "
    "ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
)
_SELECT_ROWS = (
    "SELECT seq, job_id, version, type, step, attempt, ts, data::text FROM events "
    "WHERE seq > $1 ORDER BY seq"
)

_Row = tuple[Any, ...]


class PgAppendRun(NamedTuple):
    """One run's rates (events/s) and its median batch size."""

    ours: float
    same_rows: float
    events_only: float
    batch: float


class _Written(NamedTuple):
    """What ours wrote since the last read: per batch, its events and its job-list rows."""

    events: list[list[_Row]]
    jobs: list[list[_Row]]


async def _written(conn: asyncpg.Connection, after: int) -> _Written:
    events = [tuple(r) for r in await conn.fetch(_SELECT_ROWS, after)]
    # One group commit stamps all its rows with one `ts`: each run of equal `ts` is a batch.
    batches = [list(batch) for _, batch in itertools.groupby(events, key=lambda row: row[6])]
    found = await conn.fetch(
        f"SELECT {_COLUMNS} FROM jobs WHERE job_id = any($1)", [e[1] for e in events]
    )
    rows = {r[0]: tuple(r) for r in found}
    # every event of this case is a JobCreated: each makes its job's row
    return _Written(batches, [[rows[e[1]] for e in batch] for batch in batches])


async def _raw(conn: asyncpg.Connection, written: _Written, *, job_list: bool) -> float:
    """Seconds the raw writes of `written` take, one transaction per batch."""
    started = time.perf_counter()
    for events, jobs in zip(written.events, written.jobs, strict=True):
        async with conn.transaction():
            await conn.executemany(_INSERT, events)
            if job_list:
                await conn.executemany(_UPSERT_JOB, jobs)
                await conn.execute(_SAVE_POSITION, JOB_LIST, events[-1][0])
    return time.perf_counter() - started


async def _connect_raw(database_url: str, schema: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(await new_schema(database_url, schema))
    await migrate(conn)
    return conn


async def concurrent_pg(database_url: str, appenders: int, rounds: int, chunks: int) -> PgAppendRun:
    """One run, each side in a new schema of the database, alternating ours and the
    baselines `chunks` times."""
    log = await PgEventLog.open(await new_schema(database_url, "ours"))
    same_rows = await _connect_raw(database_url, "raw_same_rows")
    events_only = await _connect_raw(database_url, "raw_events_only")
    reader = await asyncpg.connect(log.dsn)
    ours_s = same_rows_s = events_only_s = 0.0
    sizes: list[int] = []
    per_chunk = rounds // chunks
    last = 0

    async def appender(appends: list[tuple[str, list[Event]]]) -> None:
        for job_id, events in appends:
            await log.append(job_id, events, 0)

    try:
        for chunk in range(chunks):
            work: list[list[tuple[str, list[Event]]]] = [
                [
                    (f"job-{chunk}-{r:04d}-{i:02d}", [job_created(r * appenders + i)])
                    for r in range(per_chunk)
                ]
                for i in range(appenders)
            ]
            started = time.perf_counter()
            await asyncio.gather(*(appender(a) for a in work))
            ours_s += time.perf_counter() - started
            written = await _written(reader, last)
            last = written.events[-1][-1][0]
            sizes.extend(len(batch) for batch in written.events)
            same_rows_s += await _raw(same_rows, written, job_list=True)
            events_only_s += await _raw(events_only, written, job_list=False)
    finally:
        for conn in (reader, same_rows, events_only):
            await conn.close()
        await log.close()
    count = sum(sizes)
    assert count == per_chunk * chunks * appenders
    return PgAppendRun(
        count / ours_s,
        count / same_rows_s,
        count / events_only_s,
        median([float(s) for s in sizes]),
    )
