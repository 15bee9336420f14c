"""`aura compact`: the copy leaves out the progress ticks of jobs that ended long ago, keeps
every job's final state, every kept event's seq and the job list, and is swapped in whole."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from msgspec.structs import replace
from strategies import job_events

from aura.engine.config.settings import Settings
from aura.engine.files.folder_lock import FolderLock
from aura.engine.files.pruning import prune_outputs
from aura.projections.compaction import needed_ticks, ticks_to_drop
from aura.projections.events import Event, JobRetryRequested, OutputsPruned, StepProgressed
from aura.projections.job import JobState, JobStatus, fold
from aura.projections.job_list import JobRow
from aura.store import DB_FILE_NAME, EventLog
from aura.store.compact import COMPACT_SUFFIX, LogInUse, compact
from aura.store.jobs_table import JobListProjection, JobsTable
from aura.tests.e2e.raw_http import AURA, clean_env
from aura.tests.job_logs import JOBS, append_job, running
from aura.tests.unit.test_projection import record

_FAR = datetime.max.replace(tzinfo=UTC)


@settings(max_examples=60, deadline=None)
@given(job_events())
def test_an_ended_job_loses_every_tick_its_final_state_does_not_need(events: list[Event]) -> None:
    records = record(events)
    state = fold(records)
    assert state is not None
    drop = ticks_to_drop(records, _FAR)
    ticks = {r.seq for r in records if isinstance(r.event, StepProgressed)}
    if not state.is_terminal:
        assert drop == []
        return
    # the rule alone, not the fold's check behind it, decides what goes
    assert set(drop) == ticks - needed_ticks(records, state)
    kept = [
        replace(r, version=i)
        for i, r in enumerate((r for r in records if r.seq not in set(drop)), 1)
    ]
    after = fold(kept)
    assert after is not None and replace(after, version=state.version) == state


def _events(db: Path) -> list[tuple[int, str, int, str, str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT seq, job_id, version, type, data FROM events ORDER BY seq"
        ).fetchall()


async def _states(log: EventLog, job_ids: list[str]) -> dict[str, JobState]:
    states = {}
    for job_id in job_ids:
        state = fold(await log.read(job_id))
        assert state is not None
        states[job_id] = state
    return states


async def _build(data_dir: Path) -> tuple[list[str], list[str], datetime]:
    """Old jobs of every fate, then (after the cutoff it returns) a job that ended just now
    and one still running: (old job ids, recent job ids, cutoff)."""
    log = await EventLog.open(data_dir)
    await log.attach(JobListProjection())  # the job list, kept as a server keeps it
    try:
        old = [await append_job(log, make()) for make in JOBS.values() for _ in range(3)]
        cutoff = max(r.ts for r in await log.tail(0, 10_000)) + timedelta(microseconds=1)
        await asyncio.sleep(0.002)  # the recent jobs' events are stamped after the cutoff
        assert datetime.now(cutoff.tzinfo) > cutoff
        recent = [await append_job(log, JOBS["succeeded"]()), await append_job(log, running())]
    finally:
        await log.close()
    return old, recent, cutoff


async def test_compaction_keeps_every_state_seq_and_row(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / DB_FILE_NAME
    old, recent, cutoff = await _build(data_dir)
    before = _events(db)
    log = await EventLog.open(data_dir, readonly=True)
    states = await _states(log, old + recent)
    position = await JobsTable(log).position()
    await log.close()
    size_before = db.stat().st_size

    done = compact(db, cutoff)

    after = _events(db)
    assert done.events_before == len(before) and done.events_after == len(after)
    assert done.jobs_compacted == len(old)
    assert db.stat().st_size < size_before / 2 and done.bytes_after == db.stat().st_size
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    # kept events keep their seq and data; only ticks of the old jobs went
    by_seq = {row[0]: row for row in before}
    for seq, job_id, _version, type_, data in after:
        assert (by_seq[seq][1], by_seq[seq][3], by_seq[seq][4]) == (job_id, type_, data)
    gone = set(by_seq) - {row[0] for row in after}
    assert {by_seq[s][3] for s in gone} == {"StepProgressed"}
    assert {by_seq[s][1] for s in gone} == set(old)
    assert [r for r in before if r[1] in recent] == [r for r in after if r[1] in recent]

    log = await EventLog.open(data_dir)
    try:
        for job_id, state in (await _states(log, old + recent)).items():
            records = await log.read(job_id)
            assert [r.version for r in records] == list(range(1, len(records) + 1))
            expected = states[job_id]
            assert state == replace(expected, version=len(records))
        # the job list was carried over as it was: every row equals its job's replay
        rows = {row.job_id: row for row in (await JobsTable(log).page(limit=100)).rows}
        assert rows == {job_id: JobRow.of(s) for job_id, s in states.items()}
        assert await JobsTable(log).position() == position
        # a Last-Event-ID from before, of a kept event or of a dropped tick, resumes exactly
        job_id = old[0]
        kept = [seq for seq, j, *_ in after if j == job_id]
        for old_seq in (kept[3], min(s for s in gone if by_seq[s][1] == job_id)):
            resumed = await log.read_job_after_seq(job_id, old_seq)
            assert [r.seq for r in resumed] == [s for s in kept if s > old_seq]
        # appends carry on from the renumbered version
        failed = next(j for j, s in states.items() if s.status is JobStatus.FAILED and j in old)
        version = len(await log.read(failed))
        await log.append(failed, [JobRetryRequested(attempt=2, from_step="broll")], version)
    finally:
        await log.close()


async def test_a_reader_holding_the_log_open_stops_the_swap(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / DB_FILE_NAME
    _old, _recent, cutoff = await _build(data_dir)
    before = _events(db)
    with contextlib.closing(sqlite3.connect(db)) as reader:  # as `aura replay` would
        reader.execute("SELECT count(*) FROM events").fetchone()
        with pytest.raises(LogInUse, match="another process has"):
            compact(db, cutoff)
    assert _events(db) == before
    assert not [p for p in data_dir.iterdir() if COMPACT_SUFFIX in p.name]
    first = compact(db, cutoff)
    assert first.events_after < first.events_before
    inode = db.stat().st_ino
    again = compact(db, cutoff)  # nothing left to drop: the file is left as it is
    assert (again.events_before, again.events_after, again.jobs_compacted) == (
        first.events_after,
        first.events_after,
        0,
    )
    assert db.stat().st_ino == inode


async def test_pruning_records_first_then_deletes_only_old_jobs_folders(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old, recent, cutoff = await _build(data_dir)
    settings = Settings(data_dir=data_dir)
    folders = {j: settings.job_dir(j) for j in (old[0], old[1], recent[0], "not-a-job")}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "video.mp4").write_bytes(b"1234")
    log = await EventLog.open(data_dir)
    try:
        # a run cut off after recording old[1]'s pruning, before deleting its folder
        version = len(await log.read(old[1]))
        await log.append(old[1], [OutputsPruned(files=1, size_bytes=4)], version)
        pruned = await prune_outputs(log, settings, cutoff)
        assert pruned == (1, 1, 4)  # old[0] only: old[1] was recorded already
        assert [j for j, f in folders.items() if f.exists()] == [recent[0], "not-a-job"]
        for job_id in old[:2]:
            records = await log.read(job_id)
            assert [type(r.event) for r in records].count(OutputsPruned) == 1
            state = fold(records)
            assert state is not None and state.output_pruned_utc == records[-1].ts
    finally:
        await log.close()


def _compact_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*AURA, "compact", "--data-dir", str(data_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60)


async def test_the_cli_refuses_a_folder_in_use_and_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await _build(data_dir)
    before = _events(data_dir / DB_FILE_NAME)
    lock = FolderLock(data_dir)
    lock.acquire()
    try:
        refused = _compact_cli(data_dir, "--older-than", "0s")
    finally:
        lock.release()
    assert refused.returncode == 3, refused
    assert "in use" in refused.stderr and "stop it" in refused.stderr
    assert _events(data_dir / DB_FILE_NAME) == before
    assert not [p for p in data_dir.iterdir() if COMPACT_SUFFIX in p.name]


@pytest.mark.parametrize("bad", ["30", "d", "-1d", "3x", "99999999999d"])
def test_the_cli_refuses_a_malformed_duration(tmp_path: Path, bad: str) -> None:
    refused = _compact_cli(tmp_path, f"--older-than={bad}")
    assert refused.returncode == 2, refused
    assert "not a duration" in refused.stderr or "longer than any" in refused.stderr
