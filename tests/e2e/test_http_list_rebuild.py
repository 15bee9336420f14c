"""A server whose job list must be rebuilt from the log answers at once: health and the list say
it is rebuilding, a job reads and submits as usual, and the list ends equal to the log's fold."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from aura.engine.config.settings import Settings
from aura.engine.errors.taxonomy import make_error
from aura.engine.readmodel.projector import BACKGROUND_REBUILD_EVENTS
from aura.http.keys import ENGINE
from aura.http.wire import job_summary
from aura.projections.events import (
    Event,
    JobCreated,
    JobFailed,
    JobInterrupted,
    JobStarted,
    StepFailed,
    StepStarted,
)
from aura.projections.job import JobStatus, fold
from aura.projections.job_list import JobRow
from aura.store.interface import EventStore
from aura.store.log import DB_FILE_NAME, EventLog
from aura.tests.e2e.conftest import AppFactory
from aura.tests.e2e.helpers import TINY_STEPS, Client, submit
from aura.tests.e2e.openapi_check import errors, operation
from aura.tests.e2e.test_metrics import sample, scrape

#: finished jobs in the log, 5 events each: a list past BACKGROUND_REBUILD_EVENTS behind
JOBS = 3_000
#: the jobs appended at once (one group commit each)
CHUNK = 500


def finished(n: int) -> list[Event]:
    error = make_error("FFmpegNotFound", "no ffmpeg")
    return [
        JobCreated(preset="sample-hello-youtube", steps=TINY_STEPS, correlation_id=f"c{n}"),
        JobStarted(),
        StepStarted(step="prepare"),
        StepFailed(step="prepare", error=error),
        JobFailed(error=error),
    ]


async def seed(data_dir: Path) -> None:
    """JOBS failed jobs and one left running (a crash), appended with no job-list projection
    attached: the list as a migration that drops it leaves it (no rows, no position)."""
    async with await EventLog.open(data_dir) as log:
        for first in range(0, JOBS, CHUNK):
            jobs = range(first, min(first + CHUNK, JOBS))
            await asyncio.gather(*(log.append(f"old{n:05d}", finished(n), 0) for n in jobs))
        created = JobCreated(preset="sample-hello-youtube", steps=TINY_STEPS, correlation_id="r")
        await log.append("crashed", [created, JobStarted(), StepStarted(step="prepare")], 0)
        assert log.last_seq > BACKGROUND_REBUILD_EVENTS


@contextlib.contextmanager
def writes_held(data_dir: Path) -> Iterator[None]:
    """Another connection holds the database's write lock: the rebuild's next page waits (and
    is tried again if it waits past the busy timeout); reads go on."""
    conn = sqlite3.connect(data_dir / DB_FILE_NAME, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def get_json(client: Client, path: str) -> Any:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def documented(client: Client, path: str) -> Any:
    """The answer to GET `path`, checked against the OpenAPI document's schema of it."""
    doc = await get_json(client, "/api/openapi.json")
    body = await get_json(client, path)
    schema = operation(doc, "get", path.split("?")[0])["responses"]["200"]["content"]
    assert errors(schema["application/json"]["schema"], body, doc) == []
    return body


async def whole_list(client: Client) -> list[Any]:
    page = await get_json(client, "/api/jobs?limit=500")
    jobs = page["jobs"]
    while page["nextCursor"] is not None:
        page = await get_json(client, f"/api/jobs?limit=500&cursor={page['nextCursor']}")
        assert page["rebuilding"] is False
        jobs += page["jobs"]
    return list(jobs)


async def folded_list(log: EventStore) -> list[Any]:
    """Every job's row of the list, as a fold of its events gives it, newest first."""
    events: dict[str, list[Any]] = {}
    last = 0
    while page := await log.tail(last):
        for rec in page:
            events.setdefault(rec.job_id, []).append(rec)
        last = page[-1].seq
    states = [fold(records) for records in events.values()]
    rows = [job_summary(JobRow.of(s)) for s in states if s is not None]
    return [msgspec.to_builtins(r) for r in reversed(rows)]  # dicts keep creation order


async def test_the_server_answers_while_it_rebuilds_the_job_list(
    make_client: AppFactory, settings: Settings
) -> None:
    await seed(settings.data_dir)
    with writes_held(settings.data_dir):
        client = await make_client()
        health = await documented(client, "/api/health")
        assert health["status"] == "ok" and health["jobList"]["rebuilding"] is True
        assert 0 <= health["jobList"]["progress"] < 1
        assert health["jobList"]["appliedSeq"] < health["lastSeq"]
        page = await documented(client, "/api/jobs")
        assert page["rebuilding"] is True and page["jobs"] == [] and page["lastSeq"] == 0
        assert sample(await scrape(client), "aura_job_list_rebuilding") == 1
        old = await get_json(client, "/api/jobs/old00007")  # folded from its log, as always
        assert old["status"] == JobStatus.FAILED.value
        crashed = await get_json(client, "/api/jobs/crashed")  # recovered once the list is
        assert crashed["status"] == JobStatus.RUNNING.value
    new = await submit(client)  # once writes are free again: the rebuild goes on
    engine = client.app[ENGINE]
    await engine.wait_recovered()
    await engine.run_until_idle()
    health = await get_json(client, "/api/health")
    done = {"rebuilding": False, "appliedSeq": health["lastSeq"], "progress": 1}
    assert health["jobList"] == done
    assert sample(await scrape(client), "aura_job_list_rebuilding") == 0
    listed = await whole_list(client)
    assert listed == await folded_list(engine.log)
    assert len(listed) == JOBS + 2 and listed[0]["jobId"] == new["jobId"]
    assert listed[0]["status"] == listed[1]["status"] == JobStatus.SUCCEEDED.value
    crashed_log = await engine.log.read("crashed")
    assert any(isinstance(rec.event, JobInterrupted) for rec in crashed_log)  # resumed
