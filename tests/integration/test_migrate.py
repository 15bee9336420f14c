"""`aura migrate`: a SQLite log copied into PostgreSQL keeps every event's seq, version,
timestamp, type and data, its job list equals the fold of the copy, the next append continues
after the last copied seq, and a migration that cannot be whole changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from pathlib import Path

import asyncpg
import pytest

from aura.engine.files.folder_lock import FolderLock
from aura.projections.events import JobCreated, JobRetryRequested, JobStarted
from aura.projections.job import JobStatus, fold
from aura.projections.job_list import JobRow
from aura.store import DB_FILE_NAME, CorruptEvent, EventLog
from aura.store.errors import LogUnreadable
from aura.store.jobs_table import JobListProjection, JobsTable
from aura.store.pg import migrate as pg_migrate
from aura.store.pg.batch import APPEND_LOCK
from aura.store.pg.log import PgEventLog
from aura.store.pg.migrate import TargetNotEmpty, copy_log
from aura.store.pg.schema import migrate
from aura.tests.e2e.raw_http import AURA, clean_env
from aura.tests.job_logs import JOBS, append_job, running

#: seconds a test waits for a condition it expects
TIMEOUT = 30.0


async def _build(data_dir: Path) -> list[str]:
    """A SQLite log of two jobs of every fate and a running one, their appends interleaved
    (concurrent, as a server's runs commit), the job list kept as a server keeps it."""
    log = await EventLog.open(data_dir)
    await log.attach(JobListProjection())
    try:
        makers = [*JOBS.values(), *JOBS.values(), running]
        return list(await asyncio.gather(*(append_job(log, make()) for make in makers)))
    finally:
        await log.close()


def _migrate_cli(data_dir: Path, url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*AURA, "migrate", "--data-dir", str(data_dir), *args]
    env = clean_env() if url is None else clean_env(AURA_DATABASE_URL=url)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


async def _event_count(url: str) -> int | None:
    """Events in the database's log; None when it has no log at all."""
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
            return None
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def test_a_migrated_log_holds_the_same_events_job_list_and_continues_after_it(
    tmp_path: Path, pg_url: str
) -> None:
    data_dir = tmp_path / "data"
    job_ids = await _build(data_dir)
    done = _migrate_cli(data_dir, pg_url)
    assert done.returncode == 0, done.stderr
    source = await EventLog.open(data_dir, readonly=True)
    # read-only: no catch-up of the job list at open, so its rows are the migration's own
    target = await PgEventLog.open(pg_url, readonly=True)
    try:
        last_seq = await source.max_seq()
        assert f"last seq {last_seq:,}" in done.stdout and "checksum" in done.stdout
        assert f"job list: {len(set(job_ids))} jobs\n" in done.stdout
        assert await target.max_seq() == last_seq
        assert await target.tail(0, 100_000) == await source.tail(0, 100_000)  # seq, ts, data
        pg_rows = target.jobs_table
        statuses = {}
        for job_id in job_ids:
            events = await target.read(job_id)
            assert events == await source.read(job_id)  # versions 1..n, ts, events
            state = fold(events)
            assert state is not None
            assert await pg_rows.get(job_id) == JobRow.of(state)
            statuses[state.status] = job_id
        assert await pg_rows.position() == last_seq
        assert (await pg_rows.page(limit=100)).rows == (
            await JobsTable(source).page(limit=100)
        ).rows
        assert await pg_rows.count(JobStatus.RUNNING) == 1

        # the next appends, a new job and the next version of a migrated one, continue the log
        await target.close()
        target = await PgEventLog.open(pg_url)
        pg_rows = target.jobs_table
        (created,) = await target.append(
            "new-job", [JobCreated(preset="p", steps=("mux",), correlation_id="c")], 0
        )
        assert created.seq == last_seq + 1
        failed = statuses[JobStatus.FAILED]
        version = len(await target.read(failed))
        retried = await target.append(
            failed, [JobRetryRequested(attempt=2), JobStarted(attempt=2)], version
        )
        assert [r.seq for r in retried] == [last_seq + 2, last_seq + 3]
        assert [r.version for r in retried] == [version + 1, version + 2]
        row = await pg_rows.get(failed)
        assert row is not None and (row.status, row.attempt) == (JobStatus.RUNNING, 2)
    finally:
        await target.close()
        await source.close()

    # the database now holds events: a second migration refuses, a check finds the new ones
    again = _migrate_cli(data_dir, pg_url)
    assert again.returncode == 4 and "already holds" in again.stderr, again
    differs = _migrate_cli(data_dir, pg_url, "--verify")
    assert differs.returncode == 5 and "differs" in differs.stderr, differs


async def test_verify_confirms_a_migration_with_the_same_checksum(
    tmp_path: Path, pg_url: str
) -> None:
    data_dir = tmp_path / "data"
    await _build(data_dir)
    migrated = _migrate_cli(data_dir, pg_url)
    assert migrated.returncode == 0, migrated.stderr
    count = await _event_count(pg_url)
    checked = _migrate_cli(data_dir, pg_url, "--verify")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("verified:")
    checksum = migrated.stdout.rsplit(" ", 1)[1]
    assert len(checksum.strip()) == 64 and checked.stdout.rsplit(" ", 1)[1] == checksum
    assert await _event_count(pg_url) == count


async def test_a_migration_waits_for_an_append_in_flight_and_then_refuses_it(
    tmp_path: Path, pg_url: str
) -> None:
    """The copy takes the append lock before it finds the database empty: an append holding
    the lock is waited for, and once it commits the database is no longer empty."""
    data_dir = tmp_path / "data"
    await _build(data_dir)
    appender = await asyncpg.connect(pg_url)
    try:
        await migrate(appender)
        in_flight = appender.transaction()
        await in_flight.start()
        await appender.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        copying = asyncio.create_task(copy_log(data_dir / DB_FILE_NAME, pg_url))
        waiting = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        async with asyncio.timeout(TIMEOUT):  # nothing announces a wait for a lock: look
            while True:
                if await appender.fetchval(waiting):
                    break
                await asyncio.sleep(0.01)
        assert not copying.done()
        await appender.execute(
            "INSERT INTO events VALUES (1, 'j', 1, 'JobCreated', NULL, 1, now(), '{}')"
        )
        await in_flight.commit()
        with pytest.raises(TargetNotEmpty):
            await asyncio.wait_for(copying, TIMEOUT)
    finally:
        await appender.close()
    assert await _event_count(pg_url) == 1


async def test_a_migration_cut_off_by_an_unreadable_event_leaves_the_database_empty(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    await _build(data_dir)
    db = data_dir / DB_FILE_NAME
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        conn.execute(
            "INSERT INTO events VALUES (?, 'x', 1, 'NoSuchEvent', NULL, 1, "
            "'2026-01-01T00:00:00.000000Z', '{\"type\": \"NoSuchEvent\"}')",
            (last + 1,),
        )
    monkeypatch.setattr(pg_migrate, "PAGE_ROWS", 50)  # many pages written before the bad one
    with pytest.raises(CorruptEvent) as raised:
        await copy_log(db, pg_url)
    assert raised.value.seq == last + 1
    assert await _event_count(pg_url) == 0  # the schema is there, not one event of the copy


async def test_a_migration_refuses_a_log_or_database_newer_than_this_build(
    tmp_path: Path, pg_url: str
) -> None:
    data_dir = tmp_path / "data"
    await _build(data_dir)
    newer = tmp_path / "newer"
    newer.mkdir()
    with contextlib.closing(sqlite3.connect(newer / DB_FILE_NAME)) as conn:
        conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY)")
        conn.execute("PRAGMA user_version = 99")
    refused = _migrate_cli(newer, pg_url)
    assert refused.returncode == 1 and "newer than this build" in refused.stderr, refused
    assert await _event_count(pg_url) is None  # nothing was created in the database

    conn2 = await asyncpg.connect(pg_url)
    try:
        await conn2.execute(
            "CREATE TABLE aura_schema (version integer); INSERT INTO aura_schema VALUES (99)"
        )
    finally:
        await conn2.close()
    with pytest.raises(LogUnreadable):
        await copy_log(data_dir / DB_FILE_NAME, pg_url)


async def test_a_migration_refuses_a_folder_in_use_or_no_database(
    tmp_path: Path, pg_url: str
) -> None:
    data_dir = tmp_path / "data"
    await _build(data_dir)
    lock = FolderLock(data_dir)
    lock.acquire()
    try:
        refused = _migrate_cli(data_dir, pg_url)
    finally:
        lock.release()
    assert refused.returncode == 3, refused
    assert "in use" in refused.stderr and "stop it" in refused.stderr
    assert await _event_count(pg_url) is None

    no_url = _migrate_cli(data_dir, None)
    assert no_url.returncode == 2 and "--database-url" in no_url.stderr
