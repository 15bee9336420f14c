"""The job-list read model equals a replay of every job, resumes, and can be rebuilt."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import job_events

from aura.engine.errors.taxonomy import make_error
from aura.engine.readmodel.projector import Projector
from aura.projections.events import (
    Event,
    JobCanceled,
    JobCreated,
    JobFailed,
    JobRetryRequested,
    JobStarted,
    JobSucceeded,
    Output,
    StepCanceled,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobStatus, fold
from aura.projections.job_list import JobRow
from aura.store import EventLog, jobs_table
from aura.store.log import DB_FILE_NAME
from aura.store.schema import migrate

_OUTPUT = Output(video_path="v.mp4", size_bytes=1, duration_seconds=8.0, sha256="a")


async def append_interleaved(log: EventLog, jobs: dict[str, list[Event]], seed: int) -> None:
    """Append each job's events in order, jobs interleaved, several appends at once."""
    rng = random.Random(seed)
    cursors = dict.fromkeys(jobs, 0)
    while cursors:
        batch = rng.sample(sorted(cursors), k=min(len(cursors), 3))
        appends = []
        for job_id in batch:
            start = cursors[job_id]
            n = rng.randint(1, 4)
            chunk = jobs[job_id][start : start + n]
            appends.append(log.append(job_id, chunk, expected_version=start))
            cursors[job_id] = start + len(chunk)
            if cursors[job_id] == len(jobs[job_id]):
                del cursors[job_id]
        await asyncio.gather(*appends)


async def expected_rows(log: EventLog, job_ids: list[str]) -> list[JobRow]:
    rows = []
    for job_id in job_ids:
        state = fold(await log.read(job_id))
        assert state is not None
        rows.append(JobRow.of(state))
    return sorted(rows, key=lambda r: r.job_id)


@settings(max_examples=15, deadline=None)
@given(st.lists(job_events(), min_size=1, max_size=6), st.integers(0, 2**16))
def test_read_model_equals_the_replay_of_every_job(sequences: list[list[Event]], seed: int) -> None:
    async def scenario(data_dir: Path) -> None:  # hypothesis drives a fresh loop per example
        jobs = {f"job{i}": events for i, events in enumerate(sequences)}
        async with await EventLog.open(data_dir) as log:
            projector = Projector(log)
            await projector.start()
            await append_interleaved(log, jobs, seed)
            listed = sorted(await projector.list_rows(limit=100), key=lambda r: r.job_id)
            assert listed == await expected_rows(log, sorted(jobs))
            await projector.stop()

    with tempfile.TemporaryDirectory() as data_dir:
        asyncio.run(scenario(Path(data_dir)))


async def test_jobs_created_in_one_commit_keep_their_creation_order(tmp_path: Path) -> None:
    created = JobCreated(preset="p", steps=("mux",), correlation_id="c")
    names = ["c-first", "b-second", "a-third"]  # job ids that sort the other way
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        await asyncio.gather(*(log.append(name, [created], 0) for name in names))  # one commit
        assert len({rec.ts for name in names for rec in await log.read(name)}) == 1
        assert await projector.table.active_job_ids() == names  # oldest first
        assert [row.job_id for row in await projector.list_rows(limit=10)] == names[::-1]
        await projector.stop()


async def test_projector_resumes_from_its_saved_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_table, "POSITION_LAG", 3)
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(4))}
    first, rest = dict(list(jobs.items())[:2]), dict(list(jobs.items())[2:])
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        await append_interleaved(log, first, seed=1)
        await projector.stop()
        position = await projector.table.position()
        assert 0 < await log.max_seq() - 3 < position <= await log.max_seq()
        await append_interleaved(log, rest, seed=2)  # while no projector runs
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        rows = sorted(await projector.list_rows(limit=100), key=lambda r: r.job_id)
        assert rows == await expected_rows(log, sorted(jobs))
        await projector.stop()


async def test_the_position_is_saved_once_it_lags_position_lag_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_table, "POSITION_LAG", 3)
    progress = StepProgressed(step="mux", pct=50.0)
    events: list[Event] = [
        JobCreated(preset="p", steps=("mux",), correlation_id="c"),
        JobStarted(),
        StepStarted(step="mux"),
        *[progress] * 4,
        StepSucceeded(step="mux"),
        JobSucceeded(output=_OUTPUT),
    ]
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        positions = []
        for version, event in enumerate(events):  # whether or not the event changes a row
            await log.append("a", [event], version)
            positions.append(await projector.table.position())
        assert positions == [0, 0, 3, 3, 3, 6, 6, 6, 9]
        await projector.stop()


async def test_catching_up_again_from_an_earlier_position_leaves_the_rows_as_they_are(
    tmp_path: Path,
) -> None:
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(6))}
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        await append_interleaved(log, jobs, seed=5)
        await projector.stop()
        expected = await expected_rows(log, sorted(jobs))
        last = await log.max_seq()
    for position in range(0, last, 3):  # the rows already hold every event after it
        with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE_NAME)) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO projector_positions VALUES ('job_list', ?)", (position,)
            )
        async with await EventLog.open(tmp_path) as log:
            projector = Projector(log)
            await projector.start()
            assert sorted(await projector.list_rows(limit=100), key=lambda r: r.job_id) == expected
            await projector.stop()


async def test_migration_2_rebuilds_the_job_list_of_a_schema_1_database(tmp_path: Path) -> None:
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(6))}
    async with await EventLog.open(tmp_path) as log:
        await append_interleaved(log, jobs, seed=4)
        expected = await expected_rows(log, sorted(jobs))
        last = await log.max_seq()
    # As schema 1 left it: the table with `last_seq` (here empty) and a position claiming that
    # every event was applied. Only the migration's reset makes the projector fold them again.
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE_NAME)) as conn, conn:
        conn.execute("DROP TABLE jobs")
        conn.execute(
            "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, preset TEXT NOT NULL, status TEXT NOT "
            "NULL, attempt INTEGER NOT NULL, created_utc TEXT NOT NULL, started_utc TEXT, "
            "ended_utc TEXT, last_seq INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO projector_positions VALUES ('job_list', ?)", (last,))
        conn.execute("PRAGMA user_version = 1")
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        assert sorted(await projector.list_rows(limit=100), key=lambda r: r.job_id) == expected
        await projector.stop()


async def test_rebuild_from_the_log_gives_the_same_rows(tmp_path: Path) -> None:
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(5))}
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        await append_interleaved(log, jobs, seed=3)
        before = await projector.list_rows(limit=100)
        await projector.rebuild()
        assert await projector.list_rows(limit=100) == before
        await projector.stop()


async def test_list_filters_by_status_and_pages_newest_first(tmp_path: Path) -> None:
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(6))}
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        for job_id, events in jobs.items():  # one after another: creation order is job order
            await log.append(job_id, events, 0)
        everything = await projector.list_rows(limit=100)
        assert [r.job_id for r in everything] == [f"job{i}" for i in reversed(range(6))]
        assert await projector.list_rows(limit=2, offset=1) == everything[1:3]
        for status in JobStatus:
            assert await projector.list_rows(status=status, limit=100) == [
                r for r in everything if r.status is status
            ]
        await projector.stop()


def _sample_jobs(n: int) -> list[list[Event]]:
    """Jobs that end in each way: queued, running, failed, canceled, retried, succeeded."""
    error = make_error("FFmpegNotFound", "no ffmpeg")
    output = _OUTPUT
    created: list[Event] = [JobCreated(preset="p", steps=("mux",), correlation_id="c")]
    running = [*created, JobStarted(), StepStarted(step="mux")]
    failed = [*running, StepFailed(step="mux", error=error), JobFailed(error=error)]
    shapes: list[list[Event]] = [
        created,
        running,
        failed,
        [*running, StepCanceled(step="mux"), JobCanceled()],
        [*failed, JobRetryRequested(attempt=2)],
        [*running, StepSucceeded(step="mux"), JobSucceeded(output=output)],
    ]
    return [shapes[i % len(shapes)] for i in range(n)]


async def test_the_table_changes_in_the_appends_own_transaction(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        created = JobCreated(preset="p", steps=("mux",), correlation_id="c")
        await log.append("a", [created], 0)
        assert [r.status for r in await projector.list_rows()] == [JobStatus.QUEUED]
        await log.append("a", [JobStarted()], 1)
        assert [r.status for r in await projector.list_rows()] == [JobStatus.RUNNING]
        assert await projector.active_job_ids() == ["a"]
        await log.append("a", [StepStarted(step="mux")], 2)
        await log.append("a", [StepSucceeded(step="mux"), JobSucceeded(output=_OUTPUT)], 3)
        assert [r.status for r in await projector.list_rows()] == [JobStatus.SUCCEEDED]
        assert await projector.active_job_ids() == []
        await projector.stop()


async def test_rows_stay_true_when_another_connection_writes_the_same_job(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path) as one, await EventLog.open(tmp_path) as other:
        first, second = Projector(one), Projector(other)
        await first.start()
        await second.start()
        await one.append("a", [JobCreated(preset="p", steps=("mux",), correlation_id="c")], 0)
        await other.append("a", [JobStarted()], 1)  # `one` still caches the Queued row
        await one.append("a", [StepStarted(step="mux")], 2)
        assert await first.list_rows() == await expected_rows(one, ["a"])
        assert (await first.list_rows())[0].status is JobStatus.RUNNING
        await first.stop()
        await second.stop()


def _raw_rows(n: int, *, tie: int = 3) -> list[tuple[str, str, str, int, str]]:
    """`n` rows as the projector writes them, oldest first; each `tie` in a row share a created
    time (jobs created in one group commit do)."""
    statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED]
    return [
        (f"job{i:03d}", "p", statuses[i % 3].value, 1, f"2026-01-01T00:{i // tie:02d}:00.000000Z")
        for i in range(n)
    ]


def _insert(path: Path, rows: list[tuple[str, str, str, int, str]]) -> None:
    with contextlib.closing(sqlite3.connect(path / DB_FILE_NAME, isolation_level=None)) as raw:
        sql = "INSERT INTO jobs (job_id, preset, status, attempt, created_utc) VALUES (?,?,?,?,?)"
        raw.executemany(sql, rows)


async def _walk(
    table: jobs_table.JobsTable, status: JobStatus | None, limit: int
) -> list[list[str]]:
    """Every page's job ids, each page after the position the one before it gave."""
    walked: list[list[str]] = []
    after = None
    while True:
        page = await table.page(status, limit, after=after)
        walked.append([r.job_id for r in page.rows])
        if page.next is None:
            return walked
        assert page.next.job_id == page.rows[-1].job_id
        after = page.next


async def test_pages_after_a_position_walk_the_list_once_ties_included(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path) as log:
        table = jobs_table.JobsTable(log)
        rows = _raw_rows(20)
        _insert(tmp_path, rows)
        everything = [r.job_id for r in (await table.page(limit=100)).rows]
        assert everything == [r[0] for r in reversed(rows)]  # ties: the later created first
        for limit in (1, 3, 4, 7, 20, 21):
            walked = await _walk(table, None, limit)
            assert [i for page in walked for i in page] == everything, limit
            assert all(len(page) == limit for page in walked[:-1]) and walked[-1]
        for status in JobStatus:
            listed = [r.job_id for r in (await table.page(status, limit=100)).rows]
            assert [i for page in await _walk(table, status, 2) for i in page] == listed
        # rows added above a position (newer jobs) do not move it: the walk goes on as it was
        first = await table.page(None, 5)
        assert first.next is not None
        _insert(
            tmp_path,
            [(f"new{i}", "p", "Queued", 1, "2027-01-01T00:00:00.000000Z") for i in range(4)],
        )
        rest = await table.page(None, 100, after=first.next)
        assert [r.job_id for r in rest.rows] == everything[5:] and rest.next is None
        # the row a position names may change its status: the position stays where it was
        failed = await table.page(JobStatus.FAILED, 2)
        assert failed.next is not None
        with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE_NAME)) as raw, raw:
            raw.execute("UPDATE jobs SET status = 'Queued' WHERE job_id = ?", (failed.next.job_id,))
        failed_ids = [r.job_id for r in (await table.page(JobStatus.FAILED, limit=100)).rows]
        after = await table.page(JobStatus.FAILED, 100, after=failed.next)
        assert [r.job_id for r in after.rows] == failed_ids[1:]  # those after the changed row
        gone = jobs_table.ListPosition(first.next.created_utc, "nosuchjob")
        moved = jobs_table.ListPosition("2001-01-01T00:00:00.000000Z", first.next.job_id)
        for position in (gone, moved):
            with pytest.raises(jobs_table.UnknownPosition):
                await table.page(None, 5, after=position)


async def test_a_page_reads_its_rows_and_last_seq_in_one_snapshot(tmp_path: Path) -> None:
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(4))}
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        for job_id, events in jobs.items():
            await log.append(job_id, events, 0)
        first = await projector.page(limit=2)
        assert first.last_seq == log.last_seq and first.next is not None
        later = await projector.page(limit=2, after=first.next)
        assert [r.job_id for r in later.rows] == ["job1", "job0"] and later.next is None
        assert later.last_seq == log.last_seq
        await projector.stop()


def test_a_page_at_any_depth_is_a_seek_in_an_index_not_a_sort() -> None:
    with contextlib.closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        migrate(conn)
        for status in (None, JobStatus.FAILED):
            for after in (None, ("2026-01-01T00:00:00.000000Z", 7)):
                sql, params = jobs_table._list_query(status, 51, 0, after)
                plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
                assert len(plan) == 1 and "TEMP B-TREE" not in plan[0], plan
                index = "jobs_by_status" if status else "jobs_by_created"
                assert plan[0].startswith(("SEARCH", "SCAN")) and index in plan[0], plan
                if after is not None:  # a seek, not a walk from the top
                    assert plan[0].startswith("SEARCH") and "created_utc<" in plan[0], plan
