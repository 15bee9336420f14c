"""The `jobs` table: the job-list read model, a cache derived from the log.

`JobListProjection` writes the rows inside each append's own transaction (an inline projection
of the EventLog), so the table never lags the log, and saves its position with them every
POSITION_LAG events; a crash leaves both consistent. Dropping the rows and the position and
attaching again rebuilds it from the log.
"""

from __future__ import annotations

import builtins
import sqlite3
from datetime import datetime
from typing import Any, NamedTuple

from aura.projections.events import JobCreated, Recorded
from aura.projections.job import TERMINAL_JOB_STATUSES, JobStatus
from aura.projections.job_list import ROW_EVENTS, JobRow, apply_row
from aura.store.log import EventLog
from aura.store.rows import SELECT, decode_rows, format_optional_ts, format_ts

__all__ = [
    "JOB_LIST",
    "JobListProjection",
    "JobPage",
    "JobsTable",
    "ListPosition",
    "UnknownPosition",
]

#: the job-list projection's name in `projector_positions`
JOB_LIST = "job_list"
#: events the saved position may lag the last one applied. Catching up from an earlier position
#: applies those events again, which leaves the rows as they are (projections/job_list.py); not
#: saving it with every status change spares that commit a page.
POSITION_LAG = 1000

_COLUMNS = "job_id, preset, status, attempt, created_utc, started_utc, ended_utc"
_UPSERT = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
    # preset and created_utc never change after JobCreated: not set, jobs_by_created stays as is
    "ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, attempt = excluded.attempt, "
    "started_utc = excluded.started_utc, ended_utc = excluded.ended_utc"
)
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_ROW_TYPES = tuple(sorted(t.__name__ for t in ROW_EVENTS))
_ROW_EVENTS_AFTER = (
    f"{SELECT} WHERE seq > ? AND type IN ({', '.join('?' * len(_ROW_TYPES))}) ORDER BY seq LIMIT ?"
)
#: every StepSucceeded's duration of the preset's newest Succeeded jobs (jobs_by_status finds
#: them; the events' (job_id, version) index, their events)
_RECENT_DURATIONS = (
    "SELECT e.step, json_extract(e.data, '$.durationSeconds') FROM "
    "(SELECT job_id FROM jobs WHERE status = ? AND preset = ? "
    "ORDER BY created_utc DESC, rowid DESC LIMIT ?) AS j "
    "JOIN events AS e ON e.job_id = j.job_id WHERE e.type = 'StepSucceeded'"
)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _params(r: JobRow) -> tuple[object, ...]:
    return (
        r.job_id,
        r.preset,
        r.status.value,
        r.attempt,
        format_ts(r.created_utc),
        format_optional_ts(r.started_utc),
        format_optional_ts(r.ended_utc),
    )


def _to_row(r: tuple[str, str, str, int, str, str | None, str | None]) -> JobRow:
    return JobRow(
        job_id=r[0],
        preset=r[1],
        status=JobStatus(r[2]),
        attempt=r[3],
        created_utc=datetime.fromisoformat(r[4]),
        started_utc=_dt(r[5]),
        ended_utc=_dt(r[6]),
    )


class JobListProjection:
    """Folds appended events into `jobs` rows inside the append's transaction.

    Rows of jobs that are not finished stay cached between batches; a finished job's row is
    read back from the table if the job is retried.

    A transaction writes the rows that changed (events whose type is not in ROW_EVENTS are
    skipped) and, once it is POSITION_LAG events behind, the position.

    It counts the jobs of each preset it has seen succeed, so that what is derived from the
    Succeeded jobs (typical step durations) is read again only when there is news (`mark`).
    """

    def __init__(self, name: str = JOB_LIST) -> None:
        self.name = name
        self._rows: dict[str, JobRow] = {}
        self._pending: dict[str, JobRow] = {}
        self._saved = 0  # the position saved by this projection's last commit (0: none yet)
        self._saving: int | None = None  # the position written in the open transaction
        self._successes: dict[str, int] = {}  # preset -> jobs seen to succeed
        self._epoch = 0  # counts `forget`s: another writer may have changed anything
        #: save the position with every commit, not every POSITION_LAG events: while the rows
        #: are rebuilt, a page of the list is consistent with the position saved beside it
        self.save_every_commit = False

    def mark(self, preset: str) -> tuple[int, int]:
        """Changes whenever a job of the preset succeeds (or the table may have changed)."""
        return self._epoch, self._successes.get(preset, 0)

    def position(self, conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT last_seq FROM projector_positions WHERE name = ?", (self.name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def apply(self, conn: sqlite3.Connection, records: builtins.list[Recorded]) -> None:
        pending = self._pending
        for rec in records:
            if type(rec.event) not in ROW_EVENTS:
                continue
            job_id = rec.job_id
            row = pending.get(job_id) or self._rows.get(job_id)
            if row is None and not isinstance(rec.event, JobCreated):
                found = conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
                ).fetchone()
                row = None if found is None else _to_row(found)
                if row is not None and row.status not in TERMINAL_JOB_STATUSES:
                    self._rows[job_id] = row  # as committed: look it up once, not per event
            new = apply_row(row, rec)
            if new is not None and new is not row:
                pending[job_id] = new
        if pending:
            conn.executemany(_UPSERT, [_params(r) for r in pending.values()])
        last = records[-1].seq
        if self.save_every_commit or last - self._saved >= POSITION_LAG:
            conn.execute(_SAVE_POSITION, (self.name, last))
            self._saving = last

    def committed(self) -> None:
        for job_id, row in self._pending.items():
            if row.status in TERMINAL_JOB_STATUSES:
                self._rows.pop(job_id, None)
                if row.status is JobStatus.SUCCEEDED:
                    self._successes[row.preset] = self._successes.get(row.preset, 0) + 1
            else:
                self._rows[job_id] = row
        self._pending = {}
        if self._saving is not None:
            self._saved, self._saving = self._saving, None

    def forget(self) -> None:
        self._rows.clear()
        self._pending = {}
        self._saving = None
        self._saved = 0  # maybe cleared or moved by another writer: save at the next chance
        self._epoch += 1


_POSITIONS = "projector_positions WHERE name = ?"
_SAVE_POSITION = (
    "INSERT INTO projector_positions (name, last_seq) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq"
)


class ListPosition(NamedTuple):
    """A place in the list's order: right after the row of `job_id`, whose `created_utc` is as
    stored (ISO 8601 text). A page that starts there holds the rows that come after that row,
    wherever rows have been added above it since; `created_utc` never changes once a job is
    created, so a position stays where it is."""

    created_utc: str
    job_id: str


class UnknownPosition(LookupError):
    """A ListPosition that names no row of the table (no such job, or another created time)."""


class JobPage(NamedTuple):
    """A page of the list, newest first, read in one snapshot with `last_seq`."""

    rows: builtins.list[JobRow]
    #: the log's last seq: the rows are exactly what the events up to it made
    last_seq: int
    #: where the next page starts (after this page's last row); None on the last page
    next: ListPosition | None
    #: the rows are being rebuilt from the log: `last_seq` is how far the rebuild got, and the
    #: jobs whose events all come after it are missing yet
    rebuilding: bool = False


#: the list's order. rowid: rows are inserted as jobs are created, so it orders the jobs created
#: in one group commit (which share created_utc). Every index holds the rowid as its last
#: column, so `jobs_by_created (created_utc)` and `jobs_by_status (status, created_utc)` are in
#: this order: a page, and a seek to a position, are read from the index, not sorted.
_ORDER = "ORDER BY created_utc DESC, rowid DESC"
#: the rowid and created time of a position's row (its job id is the table's primary key)
_ANCHOR = "SELECT rowid, created_utc FROM jobs WHERE job_id = ?"


def _list_query(
    status: JobStatus | None, limit: int, offset: int, after: tuple[str, int] | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The rows newest first: the `limit` rows past `offset` rows, after the row whose
    (created_utc, rowid) is `after` if given (a keyset seek in the index: as fast deep in the
    list as on its first page, where an offset walks the index up to it)."""
    where: builtins.list[str] = []
    params: builtins.list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status.value)
    if after is not None:
        where.append("(created_utc, rowid) < (?, ?)")
        params.extend(after)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    sql = f"SELECT {_COLUMNS} FROM jobs {clause}{_ORDER} LIMIT ? OFFSET ?"
    return sql, (*params, limit, offset)


def _anchor(conn: sqlite3.Connection, position: ListPosition) -> tuple[str, int]:
    """The (created_utc, rowid) of the position's row; UnknownPosition if no row is there."""
    found = conn.execute(_ANCHOR, (position.job_id,)).fetchone()
    if found is None or found[1] != position.created_utc:
        raise UnknownPosition(position)
    return position.created_utc, int(found[0])


class JobsTable:
    """Reads the `jobs` rows (on the log's reader connection) and clears them for a rebuild."""

    def __init__(self, log: EventLog, name: str = JOB_LIST) -> None:
        self._log = log
        self._name = name

    async def position(self) -> int:
        """The last seq the job-list projection has applied, as saved with the rows."""
        return await self._log.run_on_reader(JobListProjection(self._name).position)

    async def clear(self) -> None:
        """Drop every row and the position (the next catch-up rebuilds from seq 0)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM jobs")
            conn.execute("DELETE FROM projector_positions WHERE name = ?", (self._name,))
            conn.execute("COMMIT")

        await self._log.run_on_writer(write)

    async def get(self, job_id: str) -> JobRow | None:
        def read(conn: sqlite3.Connection) -> JobRow | None:
            r = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            return None if r is None else _to_row(r)

        return await self._log.run_on_reader(read)

    async def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        after: ListPosition | None = None,
        *,
        rebuilding: bool = False,
    ) -> JobPage:
        """Newest first: `limit` rows, past `offset` rows and after `after` (UnknownPosition if
        it names no row), with the log's last seq read in the same snapshot: the rows are
        exactly what the events up to that seq made (the rows are written in the events'
        transactions), so the events after it are every change since. While the rows are
        `rebuilding`, that seq is the position saved with them instead (the projection saves it
        with every commit then)."""
        last_seq: tuple[str, tuple[str, ...]] = ("SELECT coalesce(max(seq), 0) FROM events", ())
        if rebuilding:
            last_seq = (f"SELECT coalesce(max(last_seq), 0) FROM {_POSITIONS}", (self._name,))

        def read(conn: sqlite3.Connection) -> JobPage:
            conn.execute("BEGIN")  # one read transaction: every query sees one snapshot
            try:
                anchor = None if after is None else _anchor(conn, after)
                sql, params = _list_query(status, limit + 1, offset, anchor)
                found = conn.execute(sql, params).fetchall()  # one more: is there a next page
                last = conn.execute(*last_seq).fetchone()[0]
            finally:
                conn.execute("COMMIT")
            more = 0 < limit < len(found)
            following = ListPosition(found[limit - 1][4], found[limit - 1][0]) if more else None
            return JobPage([_to_row(r) for r in found[:limit]], int(last), following, rebuilding)

        return await self._log.run_on_reader(read)

    async def row_events_after(self, after_seq: int, limit: int) -> builtins.list[Recorded]:
        """Events of every job with seq > `after_seq` whose type can change a row (ROW_EVENTS),
        in seq order, at most `limit`."""

        def read(conn: sqlite3.Connection) -> builtins.list[Any]:
            return conn.execute(_ROW_EVENTS_AFTER, (after_seq, *_ROW_TYPES, limit)).fetchall()

        return decode_rows(await self._log.run_on_reader(read))

    async def recent_step_durations(
        self, preset: str, jobs: int
    ) -> builtins.list[tuple[str, float]]:
        """(step, seconds) of every step that succeeded in the preset's `jobs` newest Succeeded
        jobs (a step retried counts each time it succeeded)."""

        def read(conn: sqlite3.Connection) -> builtins.list[tuple[str, float]]:
            params = (JobStatus.SUCCEEDED.value, preset, jobs)
            found = conn.execute(_RECENT_DURATIONS, params).fetchall()
            return [(step, float(s)) for step, s in found if step is not None and s is not None]

        return await self._log.run_on_reader(read)

    async def count(self, status: JobStatus | None = None) -> int:
        where, params = ("WHERE status = ?", (status.value,)) if status else ("", ())

        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute(f"SELECT count(*) FROM jobs {where}", params).fetchone()[0])

        return await self._log.run_on_reader(read)

    async def active_job_ids(self) -> builtins.list[str]:
        """Jobs whose row is Queued or Running, oldest first."""

        def read(conn: sqlite3.Connection) -> builtins.list[str]:
            sql = "SELECT job_id FROM jobs WHERE status IN (?, ?) ORDER BY created_utc, rowid"
            return [r[0] for r in conn.execute(sql, _ACTIVE)]

        return await self._log.run_on_reader(read)
