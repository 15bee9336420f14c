"""`aura serve --database-url postgresql://...`: a real server process whose log is in
PostgreSQL renders real jobs, streams them, and, SIGKILLed mid-render and started again on the
same database, resumes the interrupted job from the PostgreSQL log.

The URL carries a password (the test server trusts local connections, so it is never asked
for): it must appear nowhere the server writes or answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from aura.tests.e2e.crash_checks import kill_server, no_folder_processes
from aura.tests.e2e.raw_http import AURA, aura_serve, aura_serve_restartable, clean_env
from aura.tests.e2e.sse_client import SseEvent, SseParser, assert_stream_is_the_log
from aura.tests.tcp_proxy import TcpProxy

#: never asked for (trust), so any value connects: it must never be shown
PASSWORD = "pg-secret-7c1f9a"
#: the quickest real render (as tests/e2e/test_crash_loop.py)
BRIEF = {"title": "On PostgreSQL", "script": ["A line long enough for ffmpeg to report."]}
OPTIONS = {"quality": "draft", "encoder": "x264", "subtitles": "soft"}
WAIT = 120.0
TERMINAL = {"JobSucceeded", "JobFailed", "JobCanceled"}


def with_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{PASSWORD}@{host}"


async def follow(
    session: aiohttp.ClientSession, job_id: str, got: list[SseEvent], until: set[str]
) -> None:
    """Read the job's stream after the last message in `got` (appending each new one) until
    an event of one of the `until` types arrives, the stream ends, or the server dies."""
    headers = {"Last-Event-ID": str(got[-1].id)} if got else {}
    with contextlib.suppress(aiohttp.ClientError, ConnectionError):
        async with session.get(f"/api/jobs/{job_id}/events", headers=headers) as resp:
            if resp.status == 204:
                return
            assert resp.status == 200, await resp.text()
            parser = SseParser()
            async for chunk in resp.content.iter_any():
                for message in parser.feed(chunk):
                    assert not got or message.id > got[-1].id, (got[-1], message)
                    got.append(message)
                    if message.data["type"] in until:
                        return


async def job_log(session: aiohttp.ClientSession, job_id: str) -> list[dict[str, Any]]:
    async with session.get(f"/api/jobs/{job_id}/log") as resp:
        assert resp.status == 200
        return [json.loads(line) for line in (await resp.text()).splitlines()]


async def submit(session: aiohttp.ClientSession) -> str:
    body = {"preset": "sample-hello-youtube", "brief": BRIEF, "options": OPTIONS}
    async with session.post("/api/jobs", json=body) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["jobId"])


@pytest.mark.slow
async def test_serve_on_postgres_renders_streams_and_resumes_after_a_crash(
    tmp_path: Path, pg_url: str
) -> None:
    url = with_password(pg_url)
    data_dir = tmp_path / "data"
    with aura_serve_restartable(data_dir, "--database-url", url) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession(base_url=base) as session:
            # a render to the end, its stream the job's log exactly
            first: list[SseEvent] = []
            job = await submit(session)
            async with asyncio.timeout(WAIT):
                await follow(session, job, first, TERMINAL)
            assert first[-1].data["type"] == "JobSucceeded", first[-1]
            assert_stream_is_the_log(first, await job_log(session, job))
            async with session.get("/api/system-check") as resp:
                check = await resp.text()
            async with session.get(f"/api/jobs/{job}/diagnostics") as resp:
                diagnostics = await resp.text()

            # a second one, SIGKILLed in its b-roll and resumed by the next server
            second: list[SseEvent] = []
            interrupted = await submit(session)
            async with asyncio.timeout(WAIT):
                while not any(
                    m.data["type"] == "StepStarted" and m.data["step"] == "broll" for m in second
                ):
                    await follow(session, interrupted, second, {"StepStarted"})
            kill_server(server.served)
            await no_folder_processes(data_dir)  # its ffmpeg died with it
            server.restart(signal.SIGKILL)  # started again on the same database
        async with aiohttp.ClientSession(base_url=base) as session:
            async with asyncio.timeout(WAIT):
                while second[-1].data["type"] not in TERMINAL:
                    await follow(session, interrupted, second, TERMINAL)
            lines = await job_log(session, interrupted)
            assert_stream_is_the_log(second, lines)
            types = [line["type"] for line in lines]
            assert "JobInterrupted" in types and types[-1] == "JobSucceeded", types
            resumed = types[types.index("JobInterrupted") :]
            assert "StepStarted" in resumed  # the b-roll ran again in the second life
            # the steps before it were not: reused, not rendered twice in one attempt
            narrations = [
                line
                for line in lines
                if line["type"] == "StepSucceeded" and line["data"]["step"] == "narration"
            ]
            assert len(narrations) == 1, narrations
            async with session.get("/api/jobs?limit=10") as resp:
                listed = {j["jobId"]: j["status"] for j in (await resp.json())["jobs"]}
            assert listed == {job: "Succeeded", interrupted: "Succeeded"}
        shown = server.served.log.read_text()
    # the log is in the database: nothing of it in the data folder, the password nowhere
    assert not (data_dir / "aura.db").exists()
    for text in (shown, check, diagnostics):
        assert PASSWORD not in text
    assert "postgresql://postgres@127.0.0.1" in check or "postgres@" in diagnostics
    conn = await asyncpg.connect(pg_url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE job_id = $1", job)
    finally:
        await conn.close()
    assert stored == len(first)


async def health_status(session: aiohttp.ClientSession, wanted: int) -> dict[str, Any]:
    """GET /api/health until it answers `wanted` (the server notices the database by itself);
    its body."""
    async with asyncio.timeout(WAIT):
        while True:
            async with session.get("/api/health") as resp:
                if resp.status == wanted:
                    return dict(await resp.json())
            await asyncio.sleep(0.05)


async def test_a_server_whose_database_stops_answering_says_so_then_carries_on(
    tmp_path: Path, pg_url: str
) -> None:
    proxy, url = await TcpProxy.to(pg_url)
    # the server starts and stops in a thread: the proxy it talks through runs on this loop
    server = contextlib.ExitStack()
    try:
        served = aura_serve(tmp_path / "data", "--database-url", url, "--no-worker")
        api = await asyncio.to_thread(server.enter_context, served)
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api.port}") as session:
            first = await submit(session)
            await proxy.down()
            health = await health_status(session, 503)
            assert health["status"] == "degraded"
            assert [p["code"] for p in health["problems"]] == ["DatabaseUnavailable"]
            body = {"preset": "sample-hello-youtube", "brief": BRIEF, "options": OPTIONS}
            for method, path in (("POST", "/api/jobs"), ("GET", "/api/jobs")):
                async with session.request(method, path, json=body) as resp:
                    problem = await resp.json()
                    assert resp.status == 503, problem
                    assert problem["code"] == "DatabaseUnavailable", problem
                    assert resp.headers["Retry-After"].isdigit()
            await proxy.up()
            assert (await health_status(session, 200))["problems"] == []
            second = await submit(session)
            async with session.get("/api/jobs") as resp:
                listed = [job["jobId"] for job in (await resp.json())["jobs"]]
            assert listed == [second, first]
    finally:
        await asyncio.to_thread(server.close)
        await proxy.down()
    log = (tmp_path / "data-stderr.log").read_text(encoding="utf-8")
    assert "unhandled error" not in log and "Traceback" not in log


def test_serve_that_cannot_reach_its_database_says_so_and_exits(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://aura:{PASSWORD}@127.0.0.1:{port}/aura"
    argv = [*AURA, "serve", "--data-dir", str(tmp_path), "--port", "0", "--database-url", url]
    done = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 1, done
    assert done.stderr.startswith("aura serve: DatabaseUnavailable: the log's database does not")
    assert PASSWORD not in done.stderr + done.stdout
