"""`aura watch` against a busy server: its stream refused (503 ServerBusy) with a Retry-After.

A small server on 127.0.0.1 speaks Aura's job API for one job: the first stream request is
refused, the second streams the job's events, the third is 204 (the stream is over).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aura.cli.api import Api, open_session
from aura.cli.watch import BACKOFF, RETRY_AFTER_CAP, watch

ServerFactory = Callable[..., Awaitable[TestServer]]
JOB_ID = "j1"
EVENTS = [
    (1, "step-status", {"type": "StepStarted", "step": "mux", "status": "Running", "attempt": 1}),
    (2, "step-status", {"type": "StepSucceeded", "step": "mux", "status": "Succeeded"}),
    (3, "job-completed", {"type": "JobSucceeded", "status": "Succeeded", "attempt": 1}),
]


def _job(status: str) -> dict[str, Any]:
    mux = {"name": "mux", "status": "Pending", "progressPct": 0.0, "etaSeconds": None}
    output = {"videoPath": "/videos/v.mp4", "sizeBytes": 10, "durationSeconds": 1.0}
    return {"jobId": JOB_ID, "status": status, "attempt": 1, "steps": [mux], "errors": []} | (
        {"output": output} if status == "Succeeded" else {}
    )


class BusyOnce:
    """The job's stream: refused once (with `retry_after` as its Retry-After), then its events,
    then over."""

    def __init__(self, retry_after: str | None) -> None:
        self.retry_after = retry_after
        #: the loop's time of each stream request, and the Last-Event-ID it sent
        self.times: list[float] = []
        self.last_ids: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"/api/jobs/{JOB_ID}", self.job)
        app.router.add_get(f"/api/jobs/{JOB_ID}/events", self.events)
        return app

    async def job(self, request: web.Request) -> web.Response:
        return web.json_response(_job("Succeeded" if len(self.times) >= 2 else "Running"))

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.times.append(asyncio.get_running_loop().time())
        self.last_ids.append(request.headers.get("Last-Event-ID"))
        if len(self.times) == 1:
            problem = {
                "code": "ServerBusy",
                "detail": "as many streams open as the server allows",
                "remediation": "try again in a few seconds",
            }
            headers = {} if self.retry_after is None else {"Retry-After": self.retry_after}
            return web.json_response(
                problem, status=503, headers=headers, content_type="application/problem+json"
            )
        if len(self.times) > 2:
            return web.Response(status=204)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for seq, event, data in EVENTS:
            await resp.write(f"id: {seq}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode())
        await resp.write_eof()
        return resp


class Sleeps:
    """The waits between reconnects, recorded instead of slept (the server still answers)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def _watch(aiohttp_server: ServerFactory, busy: BusyOnce, sleeps: Sleeps) -> str:
    server = await aiohttp_server(busy.app(), host="127.0.0.1")
    out = io.StringIO()
    async with open_session() as session:
        api = Api(session, f"http://127.0.0.1:{server.port}")
        assert await watch(api, JOB_ID, out, sleep=sleeps) == 0
    assert busy.last_ids == [None, None, "3"]  # refused, streamed, over
    return out.getvalue()


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("1", 1.0),
        ("3", 3.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # a date in the past: at once
        ("86400", RETRY_AFTER_CAP),  # a silly wait is capped
        ("9" * 5000, RETRY_AFTER_CAP),
        (None, BACKOFF[0]),  # none, or none that can be read: the backoff
        ("soon", BACKOFF[0]),
    ],
)
async def test_watch_waits_as_a_busy_servers_retry_after_says(
    aiohttp_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    retry_after: str | None,
    expected: float,
) -> None:
    monkeypatch.delenv("AURA_TOKEN", raising=False)
    sleeps = Sleeps()
    out = await _watch(aiohttp_server, BusyOnce(retry_after), sleeps)
    assert sleeps.waits == [expected]
    assert out.splitlines()[-1] == "done: /videos/v.mp4 (10 bytes, 1.0 s)"


async def test_watch_waits_until_a_retry_after_date(
    aiohttp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AURA_TOKEN", raising=False)
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    sleeps = Sleeps()
    await _watch(aiohttp_server, BusyOnce(when), sleeps)
    [wait] = sleeps.waits
    assert 3.0 <= wait <= 5.0  # whole seconds, and a loaded machine's delay


async def test_aura_watch_comes_back_after_the_retry_after(aiohttp_server: ServerFactory) -> None:
    busy = BusyOnce("1")
    server = await aiohttp_server(busy.app(), host="127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURA_")}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "aura.cli.main", "watch", JOB_ID),
        *("--url", f"http://127.0.0.1:{server.port}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[-1] == "done: /videos/v.mp4 (10 bytes, 1.0 s)"
    # the backoff alone would have come back after BACKOFF[0] (0.25 s)
    assert busy.times[1] - busy.times[0] >= 0.95
