"""The job list on PostgreSQL as the engine reads it (engine/readmodel/pg_projector.py): nothing
to fold at start, and a list found behind the log rebuilt there, never served stale; the rows'
row-changing events read as on SQLite."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import pytest

from aura.engine.readmodel.pg_projector import PgProjector, projector_for
from aura.engine.readmodel.projector import Projector
from aura.projections.job_list import ROW_EVENTS
from aura.store import EventLog
from aura.store.pg.log import PgEventLog
from aura.tests.integration.test_pg_jobs_table import folded_rows
from aura.tests.job_logs import JOBS, append_job, running


async def rows_of(projector: PgProjector) -> dict[str, object]:
    return {r.job_id: r for r in await projector.list_rows(limit=100)}


async def test_a_list_in_step_with_the_log_is_read_as_it_is(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        job_ids = [await append_job(log, make()) for make in (*JOBS.values(), running)]
        projector = projector_for(log)
        assert isinstance(projector, PgProjector)
        await projector.start()
        assert "rebuilding" not in caplog.text
        assert await rows_of(projector) == await folded_rows(log, job_ids)
        assert projector.progress() == (False, log.last_seq, 1.0) and not projector.rebuilding


async def test_a_list_behind_the_log_is_rebuilt_at_start(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        job_ids = [await append_job(log, make()) for make in (*JOBS.values(), running)]
        conn = await asyncpg.connect(pg_url)
        try:  # changed behind Aura's back: a row gone, the position lost
            await conn.execute("DELETE FROM jobs WHERE job_id = $1", job_ids[0])
            await conn.execute("DELETE FROM projector_positions")
        finally:
            await conn.close()
        projector = PgProjector(log)
        assert await projector.table.lag() == log.last_seq
        with caplog.at_level(logging.INFO):
            await projector.start()
        assert "events behind the log: rebuilding it" in caplog.text
        assert await projector.table.lag() == 0
        assert await rows_of(projector) == await folded_rows(log, job_ids)


async def test_row_events_after_are_the_row_changing_events_in_seq_order(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        for make in (*JOBS.values(), running):
            await append_job(log, make())
        every = await log.tail(0, 1000)
        expected = [r for r in every if type(r.event) in ROW_EVENTS]
        table = log.jobs_table
        assert await table.row_events_after(0, 1000) == expected
        middle = expected[len(expected) // 2].seq
        assert (
            await table.row_events_after(middle, 2) == [r for r in expected if r.seq > middle][:2]
        )


async def test_the_sqlite_log_keeps_its_projector(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path) as log:
        assert type(projector_for(log)) is Projector
