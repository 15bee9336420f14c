"""Copying a SQLite log into PostgreSQL (`aura migrate`): every event with its seq, version,
timestamp, type and data, and the job list folded from the copy.

INVARIANTS
- One transaction: the events, the job list's rows and its position, and the check commit
  together or not at all. A migration that fails, is interrupted or finds a difference leaves
  the database as it was, so it is simply run again (there is nothing to resume).
- The transaction takes APPEND_LOCK (store/pg/batch.py) before it finds the database empty and
  holds it to the commit: no append of any process interleaves with the copy. Appends number
  their rows from the log's last seq, so the next one after the commit gets the last copied
  seq + 1 with nothing else to set (`jobs.created_seq`, a sequence, orders only the job list).
- The SQLite log is read in one read transaction: one snapshot, whatever writes it meanwhile.
- The check compares the two logs as stored: the count, the last seq and a checksum of every
  column of every event in seq order, each `data` compared as the JSON value it holds (`jsonb`
  keeps values, not the text's key order or spacing).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import msgspec

from aura.store.errors import CorruptEvent, LogUnreadable, StoreError
from aura.store.pg.batch import APPEND_LOCK
from aura.store.pg.errors import DB_ERRORS
from aura.store.pg.jobs_table import apply_records
from aura.store.pg.schema import migrate, schema_version
from aura.store.rows import decode_rows, format_ts
from aura.store.schema import MIGRATIONS as SQLITE_MIGRATIONS

__all__ = ["PAGE_ROWS", "LogSummary", "LogsDiffer", "TargetNotEmpty", "compare_logs", "copy_log"]

#: events read, copied and folded per page
PAGE_ROWS = 5000

_COLUMNS = ("seq", "job_id", "version", "type", "step", "attempt", "ts", "data")
_SQLITE_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
_PG_SELECT = (
    "SELECT seq, job_id, version, type, step, attempt, ts, data::text FROM events ORDER BY seq"
)

#: (seq, job_id, version, type, step, attempt, ts, data) as either database returns it (`ts`:
#: ISO 8601 text from SQLite, a datetime from PostgreSQL)
_Row = tuple[Any, ...]


class TargetNotEmpty(StoreError):
    """The database already holds events: a migration only fills an empty log."""


class LogsDiffer(StoreError):
    """The copy does not hold what the SQLite log holds."""


class LogSummary(NamedTuple):
    """What a log holds, as the check compares it."""

    events: int
    last_seq: int
    #: sha256 of every column of every event in seq order (see `_Checksum`)
    checksum: str
    #: rows of the job list (not compared: the SQLite table is a cache that may be rebuilding)
    jobs: int = 0


class _Checksum:
    """Counts and hashes rows in seq order, the same way whichever database they come from."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.events = 0
        self.last_seq = 0

    def add(self, rows: Iterable[_Row]) -> None:
        encode = msgspec.json.encode
        decode = msgspec.json.decode
        for seq, job_id, version, type_name, step, attempt, ts, data in rows:
            try:
                moment = ts if isinstance(ts, datetime) else _parse_ts(ts)
                value = decode(data)
            except (ValueError, msgspec.DecodeError) as e:
                raise CorruptEvent(seq, str(e)) from e
            canonical = (seq, job_id, version, type_name, step, attempt, format_ts(moment))
            self._hash.update(encode((*canonical, value), order="sorted"))
            self._hash.update(b"\n")
            self.events += 1
            self.last_seq = seq

    def summary(self, jobs: int = 0) -> LogSummary:
        return LogSummary(self.events, self.last_seq, self._hash.hexdigest(), jobs)


def _parse_ts(text: str) -> datetime:
    """A stored `ts` (ISO 8601, UTC) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---- the SQLite side --------------------------------------------------------------------


def _open_source(db_path: Path) -> sqlite3.Connection:
    """The SQLite log, read-only, inside one read transaction (one snapshot); LogUnreadable
    if its schema is newer than this build's."""
    if not db_path.is_file():
        raise StoreError(f"no log at {db_path}")
    try:
        conn = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True)
        conn.isolation_level = None
        conn.execute("BEGIN")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as e:
        raise StoreError(f"cannot read the log {db_path}: {e}") from e
    if version > len(SQLITE_MIGRATIONS):
        conn.close()
        raise LogUnreadable(
            f"the log's schema version {version} is newer than this build's "
            f"({len(SQLITE_MIGRATIONS)}): migrate it with the Aura that wrote it"
        )
    if version == 0:
        conn.close()
        raise StoreError(f"{db_path} holds no Aura log")
    return conn


def _source_pages(conn: sqlite3.Connection) -> Iterator[list[_Row]]:
    """The log's events in seq order, a page at a time."""
    last = 0
    while True:
        try:
            rows: list[_Row] = conn.execute(_SQLITE_SELECT, (last, PAGE_ROWS)).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the log: {e}") from e
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _source_summary(conn: sqlite3.Connection) -> LogSummary:
    checksum = _Checksum()
    for rows in _source_pages(conn):
        checksum.add(rows)
    return checksum.summary()


# ---- the PostgreSQL side ----------------------------------------------------------------


async def _target_summary(conn: asyncpg.Connection) -> LogSummary:
    """The database's log as the check compares it; inside the caller's transaction."""
    checksum = _Checksum()
    page: list[_Row] = []
    async for record in _cursor(conn):
        page.append(record)
        if len(page) == PAGE_ROWS:
            checksum.add(page)
            page = []
    checksum.add(page)
    jobs = int(await conn.fetchval("SELECT count(*) FROM jobs"))
    return checksum.summary(jobs)


async def _cursor(conn: asyncpg.Connection) -> AsyncIterator[_Row]:
    async for record in conn.cursor(_PG_SELECT, prefetch=PAGE_ROWS):
        yield tuple(record)


async def _copy_pages(conn: asyncpg.Connection, source: sqlite3.Connection) -> LogSummary:
    """Copy every event and fold each page into the job list; the source's summary."""
    checksum = _Checksum()
    for rows in _source_pages(source):
        records = decode_rows([(r[0], r[1], r[2], r[6], r[7]) for r in rows])
        checksum.add(rows)
        copied = [(*r[:6], _parse_ts(r[6]), r[7]) for r in rows]
        await conn.copy_records_to_table("events", records=copied, columns=_COLUMNS)
        await apply_records(conn, records)
    return checksum.summary()


def _check(source: LogSummary, target: LogSummary) -> None:
    if source[:3] != target[:3]:
        raise LogsDiffer(
            f"the copy differs from the log: {target.events:,} events to {source.events:,}, "
            f"last seq {target.last_seq:,} to {source.last_seq:,}, checksum "
            f"{target.checksum[:16]} to {source.checksum[:16]}"
        )


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn)
    except DB_ERRORS as e:
        raise StoreError(f"cannot connect to the database: {e}") from e


async def copy_log(db_path: Path, dsn: str) -> tuple[LogSummary, LogSummary]:
    """Copy the SQLite log at `db_path` into the empty log of the database `dsn` names
    (creating its schema), checked before the commit; (the source's, the copy's) summaries.

    Raises TargetNotEmpty, LogUnreadable (either schema newer than this build), LogsDiffer,
    CorruptEvent (an event this build cannot read), or StoreError.
    """
    source = _open_source(db_path)
    try:
        conn = await _connect(dsn)
        try:
            await migrate(conn)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
                held = await conn.fetchrow("SELECT count(*), coalesce(max(seq), 0) FROM events")
                if held[0]:
                    raise TargetNotEmpty(
                        f"the database already holds {held[0]:,} events (last seq "
                        f"{held[1]:,}): migrate into an empty database"
                    )
                copied = await _copy_pages(conn, source)
                target = await _target_summary(conn)
                _check(copied, target)
            return copied, target
        except DB_ERRORS as e:
            raise StoreError(
                f"the migration failed: {e} (it commits whole or not at all: run it again)"
            ) from e
        finally:
            await conn.close()
    finally:
        source.close()


async def compare_logs(db_path: Path, dsn: str) -> tuple[LogSummary, LogSummary]:
    """Compare the SQLite log with the database's log (one snapshot each), changing nothing;
    (the source's, the database's) summaries. Raises LogsDiffer if they differ."""
    source = _open_source(db_path)
    try:
        conn = await _connect(dsn)
        try:
            if await schema_version(conn) == 0:
                raise StoreError("no Aura log in this database")
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                target = await _target_summary(conn)
            expected = _source_summary(source)
        except DB_ERRORS as e:
            raise StoreError(f"cannot read the database: {e}") from e
        finally:
            await conn.close()
    finally:
        source.close()
    _check(expected, target)
    return expected, target
