"""A job list far behind the log is rebuilt in the background: appends go on meanwhile, each page
of the list is exact as of the seq it names, and the rows end equal to a replay of every job."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from aura.engine.readmodel import projector as projector_module
from aura.engine.readmodel.projector import Projector
from aura.projections.events import (
    JobCreated,
    JobStarted,
    JobSucceeded,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobStatus, fold
from aura.projections.job_list import JobRow
from aura.store import EventLog
from aura.store.batch import catch_up_page
from aura.store.log import DB_FILE_NAME
from aura.tests.integration.test_projector import _OUTPUT, _sample_jobs, append_interleaved

#: what the tests make "far behind": a table further than this from the log is rebuilt in the
#: background, PAGE events a transaction
FAR = 40
PAGE = 7


@pytest.fixture(autouse=True)
def _small_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(projector_module, "BACKGROUND_REBUILD_EVENTS", FAR)
    monkeypatch.setattr(projector_module, "REBUILD_PAGE", PAGE)


async def rows_up_to(log: EventLog, seq: int) -> list[JobRow]:
    """Every job's row as the events up to `seq` make it, by job id."""
    rows = []
    for job_id in {rec.job_id for rec in await log.tail(0, 100_000) if rec.seq <= seq}:
        state = fold(rec for rec in await log.read(job_id) if rec.seq <= seq)
        assert state is not None
        rows.append(JobRow.of(state))
    return sorted(rows, key=lambda r: r.job_id)


async def listed(projector: Projector) -> tuple[list[JobRow], int, bool]:
    page = await projector.page(limit=500)
    return sorted(page.rows, key=lambda r: r.job_id), page.last_seq, page.rebuilding


async def test_appends_during_a_background_rebuild_all_reach_the_list(tmp_path: Path) -> None:
    jobs = {f"old{i}": events for i, events in enumerate(_sample_jobs(12))}
    async with await EventLog.open(tmp_path) as log:
        await append_interleaved(log, jobs, seed=7)  # no projector: the table never saw them
        assert log.last_seq > FAR
        projector = Projector(log)
        await projector.start()
        assert projector.rebuilding and projector.progress().rebuilding
        # an old job that ends while its events are being folded
        await log.append("old1", [StepSucceeded(step="mux"), JobSucceeded(output=_OUTPUT)], 3)
        created = JobCreated(preset="p", steps=("mux",), correlation_id="c")
        new: list[str] = []
        pages_seen = 0
        while projector.rebuilding:  # new jobs between the rebuild's pages
            job_id = f"new{len(new)}"
            new.append(job_id)
            await log.append(job_id, [created], 0)
            await log.append(job_id, [JobStarted(), StepStarted(step="mux")], 1)
            rows, last_seq, rebuilding = await listed(projector)
            if rebuilding:  # exact as of the seq it names, however far the rebuild got
                assert rows == await rows_up_to(log, last_seq)
                pages_seen += 1
        await projector.wait_rebuilt()
        assert new and pages_seen
        assert projector.progress() == (False, log.last_seq, 1.0)
        rows, last_seq, rebuilding = await listed(projector)
        assert not rebuilding and last_seq == log.last_seq
        assert rows == await rows_up_to(log, log.last_seq)
        # attached now: an append changes its row in its own commit
        await log.append("new0", [StepSucceeded(step="mux"), JobSucceeded(output=_OUTPUT)], 3)
        row = await projector.table.get("new0")
        assert row is not None and row.status is JobStatus.SUCCEEDED
        await projector.stop()


async def test_a_lost_position_rebuilds_from_an_empty_table_and_a_stop_resumes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(18))}
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        await append_interleaved(log, jobs, seed=9)
        await projector.stop()
        expected = await rows_up_to(log, log.last_seq)
    with contextlib.closing(sqlite3.connect(tmp_path / DB_FILE_NAME)) as conn, conn:
        conn.execute("DELETE FROM projector_positions")  # the rows stay, their position is lost
    loop, first_page = asyncio.get_running_loop(), asyncio.Event()

    def page_then_tell(*args: Any, **kwargs: Any) -> int | None:  # on the writer's thread
        applied = catch_up_page(*args, **kwargs)
        loop.call_soon_threadsafe(first_page.set)  # wakes the test before the next page
        return applied

    monkeypatch.setattr(projector_module, "catch_up_page", page_then_tell)
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        assert projector.rebuilding
        await first_page.wait()
        await projector.stop()  # at the end of the page under way
        rows, last_seq, _ = await listed(projector)
        assert 0 < last_seq < log.last_seq
        assert rows == await rows_up_to(log, last_seq)  # no row of the earlier fold is left
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()  # from the position the stopped rebuild saved
        await projector.wait_rebuilt()
        assert (await listed(projector))[0] == expected
        await projector.stop()


async def test_a_rebuild_that_fails_says_so_until_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = {f"job{i}": events for i, events in enumerate(_sample_jobs(12))}
    async with await EventLog.open(tmp_path) as log:
        await append_interleaved(log, jobs, seed=5)  # no projector: the table never saw them

    def broken_page(*args: Any, **kwargs: Any) -> int | None:  # a defect, not the log refusing
        raise RuntimeError("a page that cannot be folded")

    with monkeypatch.context() as patch:
        patch.setattr(projector_module, "catch_up_page", broken_page)
        async with await EventLog.open(tmp_path) as log:
            projector = Projector(log)
            assert projector.problem() is None
            await projector.start()
            await projector.wait_rebuilt()  # it ended, failed
            assert projector.rebuilding
            problem = projector.problem()
            assert problem is not None and problem.code == "Internal"
            assert "could not be rebuilt" in problem.message
            await projector.stop()
    async with await EventLog.open(tmp_path) as log:  # the next start folds it whole
        projector = Projector(log)
        await projector.start()
        await projector.wait_rebuilt()
        assert projector.problem() is None and not projector.rebuilding
        await projector.stop()
