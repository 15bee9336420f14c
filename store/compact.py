"""A compacted copy of the log: the progress ticks of jobs that ended long ago are left out.

The log is never changed in place (its triggers refuse UPDATE and DELETE): the kept rows are
copied, in seq order, into a new file beside it, which is checked (`PRAGMA integrity_check`,
its row count), fsynced, and swapped in with one rename. The caller holds the data folder's lock
(engine/files/folder_lock.py): no engine writes the log meanwhile.

What is kept:
- every event of a job that has not ended, or ended at or after `ended_before`;
- every event but StepProgressed of the other jobs, and of their StepProgressed only those the
  job's final state is made of (projections/compaction.py), so that a fold of the copy gives
  every job the same final state (checked for each job before it is compacted; a job that does
  not fold, or would fold differently, is copied whole);
- the seq of every kept event: a client's Last-Event-ID, a page's lastSeq and `?at=SEQ` mean
  the same event after the swap (a Last-Event-ID of a dropped tick resumes at the next event);
- the other tables (the job list's rows and position: no row event is dropped), as they are.

Versions of a compacted job are renumbered 1, 2, 3...: the fold takes a version gap for a lost
or foreign event (projections/job.py), and every reader and test relies on a job's versions
being contiguous. A version is only the job's append counter (an append expects the job's last
one); nothing outside the log resumes by version, so renumbering moves no client.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from aura.projections.compaction import ticks_to_drop
from aura.projections.events import Recorded
from aura.store.copies import check_copy, remove_copy
from aura.store.errors import CorruptEvent, StoreError
from aura.store.fsync import fsync_file, fsync_folder
from aura.store.rows import SELECT, decode_rows
from aura.store.schema import migrate

__all__ = [
    "COMPACT_SUFFIX",
    "Compaction",
    "LogInUse",
    "compact",
]

#: the copy's name while it is written: `aura.db.compact-tmp`, beside the log
COMPACT_SUFFIX = ".compact-tmp"
#: dropped seqs sent to the copy's temp table per executemany
_CHUNK = 10_000


class LogInUse(StoreError):
    """Another process still has the log open, so its file cannot be swapped."""


class Compaction(NamedTuple):
    """What a compaction did."""

    events_before: int
    events_after: int
    bytes_before: int
    bytes_after: int
    #: jobs whose progress ticks were left out
    jobs_compacted: int


def compact(db_path: Path, ended_before: datetime) -> Compaction:
    """Replace the log at `db_path` with a copy without the ticks `ticks_to_drop` finds.

    The caller holds the data folder's lock. Raises LogInUse (and changes nothing) when another
    process still has the log open, StoreError when the copy cannot be written or checked.
    """
    temp = db_path.with_name(db_path.name + COMPACT_SUFFIX)
    remove_copy(temp)
    src = _connect(db_path)
    try:
        migrate(src)  # as any opener of the log would: the copy has this build's schema
        src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        bytes_before = _size(db_path)
        events_before = _count(src)
        dst = _connect(temp)
        try:
            dst.execute("PRAGMA journal_mode=OFF")  # a failed copy is deleted, never rolled back
            dst.execute("PRAGMA synchronous=OFF")  # fsynced once, whole, below
            migrate(dst)
            jobs = _mark_dropped(src, dst, ended_before)
            _copy(dst, db_path)
            events_after = _count(dst)
            dropped = dst.execute("SELECT count(*) FROM temp.dropped").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error as e:
        remove_copy(temp)
        raise StoreError(f"cannot compact {db_path}: {e}") from e
    except BaseException:
        remove_copy(temp)
        raise
    finally:
        src.close()  # the last connection: SQLite checkpoints the WAL and deletes it
    if not dropped:  # nothing to leave out: the log stays as it is
        remove_copy(temp)
        return Compaction(events_before, events_before, bytes_before, bytes_before, 0)
    try:
        if events_after != events_before - dropped:
            raise StoreError(f"the copy holds {events_after} events, not {events_before - dropped}")
        fsync_file(temp)
        check_copy(temp, "the compacted copy")
        _swap(temp, db_path)
    except (sqlite3.Error, OSError) as e:
        remove_copy(temp)
        raise StoreError(f"cannot compact {db_path}: {e}") from e
    except BaseException:
        remove_copy(temp)
        raise
    return Compaction(events_before, events_after, bytes_before, _size(db_path), jobs)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _count(conn: sqlite3.Connection, schema: str = "main") -> int:
    return int(conn.execute(f"SELECT count(*) FROM {schema}.events").fetchone()[0])


def _jobs(src: sqlite3.Connection) -> Iterator[list[Recorded] | None]:
    """Each job's records in version order (None for a job with a row that does not decode),
    read in one pass over the (job_id, version) index."""
    rows = src.execute(SELECT + " ORDER BY job_id, version")
    for _job_id, group in itertools.groupby(rows, key=lambda row: row[1]):
        try:
            yield decode_rows(list(group))
        except CorruptEvent:
            yield None


def _mark_dropped(src: sqlite3.Connection, dst: sqlite3.Connection, ended_before: datetime) -> int:
    """Fill the copy's temp tables `dropped` (seqs) and `renumbered` (job ids); returns the
    number of jobs compacted."""
    dst.execute("CREATE TEMP TABLE dropped (seq INTEGER PRIMARY KEY)")
    dst.execute("CREATE TEMP TABLE renumbered (job_id TEXT PRIMARY KEY)")
    jobs = 0
    pending: list[tuple[int]] = []
    dst.execute("BEGIN")
    for records in _jobs(src):
        drop = [] if records is None else ticks_to_drop(records, ended_before)
        if not drop or records is None:
            continue
        jobs += 1
        dst.execute("INSERT INTO temp.renumbered VALUES (?)", (records[0].job_id,))
        pending.extend((seq,) for seq in drop)
        if len(pending) >= _CHUNK:
            dst.executemany("INSERT INTO temp.dropped VALUES (?)", pending)
            pending = []
    dst.executemany("INSERT INTO temp.dropped VALUES (?)", pending)
    dst.execute("COMMIT")
    return jobs


_COPY_EVENTS = """
INSERT INTO main.events (seq, job_id, version, type, step, attempt, ts, data)
SELECT seq, job_id,
       CASE WHEN job_id IN (SELECT job_id FROM temp.renumbered)
            THEN row_number() OVER (PARTITION BY job_id ORDER BY version)
            ELSE version END,
       type, step, attempt, ts, data
FROM src.events WHERE seq NOT IN (SELECT seq FROM temp.dropped) ORDER BY seq
"""


def _copy(dst: sqlite3.Connection, db_path: Path) -> None:
    """Copy the kept events (renumbering the compacted jobs' versions) and every other table."""
    dst.execute("ATTACH DATABASE ? AS src", (str(db_path),))
    try:
        dst.execute("BEGIN")
        dst.execute(_COPY_EVENTS)
        tables = dst.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND name != 'events'"
        ).fetchall()
        for (name,) in tables:
            dst.execute(f'DELETE FROM main."{name}"')
            dst.execute(f'INSERT INTO main."{name}" SELECT * FROM src."{name}"')
        dst.execute("COMMIT")
    finally:
        dst.execute("DETACH DATABASE src")


def _swap(temp: Path, db_path: Path) -> None:
    """Rename the copy over the log. The log's WAL must be gone: SQLite deletes it when the last
    connection closes, so one still there means another process has the log open (an
    `aura replay`, a backup), and the new file must not meet the old file's WAL."""
    wal = db_path.with_name(db_path.name + "-wal")
    if wal.exists():
        raise LogInUse(
            f"another process has {db_path} open ({wal.name} is still there): "
            "stop it (aura replay, aura backup) and compact again"
        )
    # no connection left, so the wal-index is stale; SQLite would also rebuild it
    remove_copy(db_path.with_name(db_path.name + "-shm"))
    os.replace(temp, db_path)
    fsync_folder(db_path.parent)


def _size(path: Path) -> int:
    return sum(_file_size(path.with_name(path.name + s)) for s in ("", "-wal"))


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
