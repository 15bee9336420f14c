"""Load, scaled down for CI (bench/load.py runs the full size: 20 renders, 1,000 subscribers):
real renders submitted at once, more than the concurrency setting runs, and many SSE subscribers
to one job. Every job ends Succeeded, and every subscriber receives exactly the job's log."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from aura.engine.config.inputs import JobRequest
from aura.engine.config.settings import Settings
from aura.http.keys import ENGINE
from aura.projections.job import JobStatus
from aura.tests.e2e.conftest import AppFactory
from aura.tests.e2e.helpers import log_lines
from aura.tests.e2e.sse_client import read_events
from aura.tests.render_helpers import DRAFT, SHORT_BRIEF, settings_for

RENDERS = 4
CONCURRENCY = 2
SUBSCRIBERS = 200
#: the quickest real render the tests make: two short lines at draft quality
BODY = msgspec.to_builtins(JobRequest(preset="default", brief=SHORT_BRIEF, options=DRAFT))


def allow_open_files(needed: int) -> None:
    """Raise this process's soft limit of open files to `needed` (within the hard limit): each
    subscriber holds a socket here, and the server its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


async def get_json(session: Any, url: Any) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.mark.slow
async def test_renders_at_once_and_many_subscribers_to_one_job_lose_nothing(
    make_client: AppFactory, tmp_path: Path
) -> None:
    allow_open_files(4 * SUBSCRIBERS + 256)
    settings: Settings = settings_for(tmp_path, max_concurrent_jobs=CONCURRENCY)
    client = await make_client(settings=settings, pipeline=None)  # the real steps
    answers = await asyncio.gather(*(client.post("/api/jobs", json=BODY) for _ in range(RENDERS)))
    assert [a.status for a in answers] == [201] * RENDERS
    listed = await get_json(client, "/api/jobs")
    watched = listed["jobs"][0]["jobId"]  # the last queued: it starts after a render ends
    url = client.make_url(f"/api/jobs/{watched}/events")
    connector = aiohttp.TCPConnector(limit=0)  # one connection per subscriber, all at once
    async with aiohttp.ClientSession(connector=connector) as session:
        streams = await asyncio.gather(*(session.get(url) for _ in range(SUBSCRIBERS)))
        assert [s.status for s in streams] == [200] * SUBSCRIBERS
        # every subscriber is there before the job starts: all but JobCreated reaches them live
        job = await get_json(session, client.make_url(f"/api/jobs/{watched}"))
        assert job["status"] == JobStatus.QUEUED.value
        received = await asyncio.gather(*(read_events(s) for s in streams))
        for s in streams:
            s.release()
    log = [(line["seq"], line["type"]) for line in await log_lines(client, watched)]
    assert log[-1][1] == "JobSucceeded"
    for events in received:
        assert [(e.id, e.data["type"]) for e in events] == log
    await client.app[ENGINE].run_until_idle()
    for answer in answers:
        job_id = (await answer.json())["jobId"]
        job = await get_json(client, f"/api/jobs/{job_id}")
        assert job["status"] == JobStatus.SUCCEEDED.value, job
