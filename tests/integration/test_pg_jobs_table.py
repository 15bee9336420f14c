"""The job list on PostgreSQL: written in each append's own transaction by every process that
appends, equal to the fold of each job's events, and read as the SQLite table is."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from aura.projections.events import JobCreated
from aura.projections.job import fold
from aura.projections.job_list import JobRow
from aura.store import StoreError
from aura.store.pg.log import PgEventLog
from aura.tests.job_logs import JOBS, append_job, running


async def folded_rows(log: PgEventLog, job_ids: list[str]) -> dict[str, JobRow]:
    rows = {}
    for job_id in job_ids:
        state = fold(await log.read(job_id))
        assert state is not None
        rows[job_id] = JobRow.of(state)
    return rows


async def test_rows_written_by_two_processes_equal_the_fold_of_each_job(pg_url: str) -> None:
    first, second = await PgEventLog.open(pg_url), await PgEventLog.open(pg_url)
    try:
        kinds = [*JOBS.values(), running]
        job_ids = await asyncio.gather(
            *(append_job(log, make()) for log in (first, second) for make in kinds)
        )
        table = second.jobs_table
        expected = await folded_rows(first, job_ids)
        assert {job_id: await table.get(job_id) for job_id in job_ids} == expected
        assert await table.count() == len(job_ids)
        assert await table.position() == await first.max_seq()
        page = await table.page(limit=4)
        assert page.last_seq == await first.max_seq() and page.next is not None
        rest = await table.page(limit=100, after=page.next)
        listed = [r.job_id for r in page.rows + rest.rows]
        assert sorted(listed) == sorted(job_ids) and rest.next is None
        assert set(await table.active_job_ids()) == {
            j for j, row in expected.items() if row.status.value in ("Queued", "Running")
        }
    finally:
        await second.close()
        await first.close()


async def test_an_append_rolled_back_leaves_no_row(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(  # the rows are written after the events: a failure there
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.preset = 'refused' THEN RAISE EXCEPTION 'row refused'; END IF; "
                "RETURN NEW; END $$;"
                "CREATE TRIGGER refuse BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        finally:
            await conn.close()
        events = JOBS["succeeded"]()
        refused = JobCreated(preset="refused", steps=(), correlation_id="c")
        with pytest.raises(StoreError, match="row refused"):
            await log.append("x", [refused], 0)
        assert await log.read("x") == []  # the event was rolled back with its row
        assert await log.jobs_table.get("x") is None
        job_id = await append_job(log, events)
        assert (await log.jobs_table.get(job_id)) == (await folded_rows(log, [job_id]))[job_id]


async def test_a_table_behind_the_log_is_caught_up_at_open(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        job_ids = [await append_job(log, make()) for make in JOBS.values()]
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("DELETE FROM jobs; DELETE FROM projector_positions")
    finally:
        await conn.close()
    async with await PgEventLog.open(pg_url) as reopened:
        expected = await folded_rows(reopened, job_ids)
        assert {j: await reopened.jobs_table.get(j) for j in job_ids} == expected
