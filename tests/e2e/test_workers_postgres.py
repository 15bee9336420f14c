"""`aura serve --no-worker` and `aura worker` processes sharing one PostgreSQL log: jobs are
claimed through leases, a worker SIGKILLed mid-render loses its job to another, which resumes it
from the interrupted step, and a worker whose database connections are cut carries on.

Every job must end Succeeded once, with contiguous versions, no step of one attempt started
twice while running (from the log's own StepStarted / end pairs, and from the workers' tool
processes, sampled while the jobs run), and a stream on the API that is the job's log exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest

from aura.engine.run.leased_runner import WORKER_ID_FILE
from aura.tests.e2e.crash_checks import kill_server
from aura.tests.e2e.raw_http import AURA, Served, aura_serve, clean_env, stop_serve
from aura.tests.e2e.sse_client import SseEvent, assert_stream_is_the_log
from aura.tests.e2e.test_serve_postgres import TERMINAL, follow, job_log, submit
from aura.tests.e2e.tool_watch import overlaps, runners, watching_tools
from aura.tests.runner_support import until

#: short leases, so a dead worker's job moves on within seconds
LEASE_SECONDS = "4"
#: jobs of the three-worker test
JOBS = 30
#: seconds the whole batch may take on a loaded machine
BATCH_WAIT = 240.0
#: seconds a worker may take to say it runs
START_WAIT = 30.0
#: the events that end a running step (or the run, for JobInterrupted)
STEP_ENDS = {"StepSucceeded", "StepFailed", "StepCanceled", "StepSkipped"}


#: terminates the backends of the connections named $1
CUT = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1"


def with_app_name(url: str, name: str) -> str:
    """The URL, its connections named `name` in pg_stat_activity."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


@contextlib.contextmanager
def aura_worker(data_dir: Path, url: str, **env: str) -> Iterator[Served]:
    """`aura worker` on `url` (its stderr in a file beside the folder), once it says it runs;
    stopped with SIGTERM at the end unless the test killed it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}-stderr.log"
    argv = [*AURA, "worker", "--data-dir", str(data_dir), "--database-url", url]
    with log.open("a") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, env=clean_env(**env)
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "Aura worker" not in line:
        stop_serve(proc, signal.SIGKILL)
        raise AssertionError((line, log.read_text()))
    try:
        yield Served(proc, 0, log)
    finally:
        if proc.poll() is None:
            stop_serve(proc, signal.SIGTERM)


def assert_ran_once(lines: list[dict[str, Any]]) -> None:
    """Versions 1..n; one JobSucceeded, last; no step of an attempt started again while its
    earlier start had not ended (a JobInterrupted ends it: its worker is gone)."""
    assert [line["version"] for line in lines] == list(range(1, len(lines) + 1))
    types = [line["type"] for line in lines]
    assert types[-1] == "JobSucceeded" and types.count("JobSucceeded") == 1, types
    running: set[tuple[int, str]] = set()
    for line in lines:
        key = (line["attempt"], line["step"])
        if line["type"] == "StepStarted":
            assert key not in running, (key, types)
            running.add(key)
        elif line["type"] in STEP_ENDS:
            running.discard(key)
        elif line["type"] == "JobInterrupted":
            running.clear()


def assert_resumed_reusing_steps(lines: list[dict[str, Any]]) -> None:
    """The job was interrupted (past its narration, at least once) and each time resumed at the
    interrupted step: every step that had succeeded in the attempt was reused (StepSkipped),
    not run again (preflight always runs again)."""
    cuts = [i for i, line in enumerate(lines) if line["type"] == "JobInterrupted"]
    assert cuts, [line["type"] for line in lines]
    past_narration = False
    for n, cut in enumerate(cuts):
        attempt = lines[cut]["attempt"]
        before = [x for x in lines[:cut] if x["attempt"] == attempt]
        end = cuts[n + 1] if n + 1 < len(cuts) else len(lines)
        after = [(x["type"], x["step"]) for x in lines[cut:end]]
        reused = ("StepSucceeded", "StepSkipped")
        done = {x["step"] for x in before if x["type"] in reused} - {"preflight"}
        past_narration = past_narration or "narration" in done
        for step in done:
            assert ("StepSkipped", step) in after and ("StepStarted", step) not in after, after
        if lines[cut]["step"] is not None:  # a step was running: it runs again
            assert ("StepStarted", lines[cut]["step"]) in after, after
    assert past_narration, [line["type"] for line in lines]


async def holder(conn: asyncpg.Connection, job_id: str) -> str | None:
    """The worker holding the job's live lease, if any."""
    sql = "SELECT worker_id FROM job_leases WHERE job_id = $1 AND worker_id IS NOT NULL"
    found: str | None = await conn.fetchval(sql, job_id)
    return found


async def mid_render(
    conn: asyncpg.Connection, streams: dict[str, list[SseEvent]]
) -> tuple[str, str]:
    """A job past its narration and not ended yet (its stream says so), and the worker
    holding it."""
    while True:
        for job, got in streams.items():
            types = {m.data["type"] for m in got}
            ended = types & TERMINAL
            narrated = any(
                m.data["type"] == "StepSucceeded" and m.data["step"] == "narration" for m in got
            )
            owner = await holder(conn, job) if narrated and not ended else None
            if owner is not None:
                return job, owner
        await asyncio.sleep(0.05)


def started(events: list[SseEvent], step: str) -> bool:
    return any(m.data["type"] == "StepStarted" and m.data["step"] == step for m in events)


def step_running(events: list[SseEvent], step: str) -> bool:
    """The stream's last step event says `step` is running."""
    steps = [m for m in events if m.data["type"] == "StepStarted" or m.data["type"] in STEP_ENDS]
    return (
        bool(steps) and steps[-1].data["type"] == "StepStarted" and steps[-1].data["step"] == step
    )


def tools_of(served: Served) -> list[psutil.Process]:
    """The worker's tool processes (ffmpeg, espeak-ng, ...), not Python or setpriv."""
    found = []
    for proc in psutil.Process(served.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if not proc.name().startswith(("python", "setpriv")):
                found.append(proc)
    return found


async def hold_tools(served: Served) -> list[psutil.Process]:
    """Stop (SIGSTOP) the worker's tools once it runs some: its step cannot end meanwhile."""
    await until(lambda: tools_of(served), BATCH_WAIT)
    tools = tools_of(served)
    for tool in tools:
        with contextlib.suppress(psutil.Error):
            tool.suspend()
    return tools


async def follow_to_end(session: aiohttp.ClientSession, job_id: str, got: list[SseEvent]) -> None:
    while not got or got[-1].data["type"] != "JobSucceeded":
        await follow(session, job_id, got, {"JobSucceeded"})
        if got and got[-1].data["type"] in TERMINAL - {"JobSucceeded"}:
            return


@pytest.mark.slow
async def test_three_workers_share_the_queue_and_resume_a_killed_workers_job(
    tmp_path: Path, pg_url: str
) -> None:
    shared = tmp_path / "artifacts"
    env = {"AURA_LEASE_SECONDS": LEASE_SECONDS, "AURA_ARTIFACTS_DIR": str(shared)}
    conn = await asyncpg.connect(pg_url)
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(
            aura_serve(tmp_path / "api", "--database-url", pg_url, "--no-worker", **env)
        )
        workers = {}
        for n in range(3):
            folder = tmp_path / f"worker{n}"
            served = stack.enter_context(
                aura_worker(folder, with_app_name(pg_url, f"aura-worker-{n}"), **env)
            )
            workers[(folder / WORKER_ID_FILE).read_text().strip()] = served
        pids = {served.proc.pid for served in workers.values()}
        samples = stack.enter_context(watching_tools(pids, shared))
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api.port}") as session:
            jobs = [await submit(session) for _ in range(JOBS)]
            streams: dict[str, list[SseEvent]] = {job: [] for job in jobs}
            following = [
                asyncio.create_task(follow_to_end(session, job, got))
                for job, got in streams.items()
            ]
            async with asyncio.timeout(BATCH_WAIT):
                victim, owner = await mid_render(conn, streams)
                killed = workers[owner]
                tools = tools_of(killed)
                killed_at = time.monotonic()
                kill_server(killed)
                _gone, alive = psutil.wait_procs(tools, timeout=10)
                assert not alive, f"outlived their worker: {alive}"
                await asyncio.gather(*following)
            logs = {job: await job_log(session, job) for job in jobs}
            # the API serves the video a worker wrote to the shared folder
            async with session.get(f"/api/jobs/{victim}/output") as resp:
                assert resp.status == 200 and len(await resp.read()) > 1000
            async with session.get(f"/api/jobs?limit={JOBS}") as resp:
                listed = {j["jobId"]: j["status"] for j in (await resp.json())["jobs"]}
    await conn.close()
    assert listed == dict.fromkeys(jobs, "Succeeded")
    for job in jobs:
        assert_ran_once(logs[job])
        assert_stream_is_the_log(streams[job], logs[job])
    assert_resumed_reusing_steps(logs[victim])
    # the processes seen: no step's output was worked on by two workers at once; every job's
    # tools were seen, and the victim's, by the killed worker and then by another
    twice = overlaps(samples)
    assert not twice, twice[:5]
    ran = runners(samples)
    assert ran.keys() == set(jobs), (len(samples), sorted(set(jobs) - ran.keys()))
    assert killed.proc.pid in ran[victim], ran[victim]
    assert runners(samples, killed_at).get(victim, set()) - {killed.proc.pid}, ran[victim]


@pytest.mark.slow
async def test_a_worker_whose_connections_are_cut_mid_step_still_finishes_the_job_once(
    tmp_path: Path, pg_url: str
) -> None:
    env = {"AURA_LEASE_SECONDS": LEASE_SECONDS, "AURA_ARTIFACTS_DIR": str(tmp_path / "files")}
    name = "aura-worker-cut"
    conn = await asyncpg.connect(pg_url)
    with (
        aura_serve(tmp_path / "api", "--database-url", pg_url, "--no-worker", **env) as api,
        aura_worker(tmp_path / "worker", with_app_name(pg_url, name), **env),
    ):
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api.port}") as session:
            job = await submit(session)
            got: list[SseEvent] = []
            following = asyncio.create_task(follow_to_end(session, job, got))
            async with asyncio.timeout(BATCH_WAIT):
                cut = 0
                for step in ("narration", "broll"):
                    await until(functools.partial(started, got, step), BATCH_WAIT)
                    cut += await conn.fetchval(CUT, name)
                    while step_running(got, step):  # cut again and again while it runs
                        await asyncio.sleep(0.05)
                        cut += await conn.fetchval(CUT, name)
                await following
            lines = await job_log(session, job)
    await conn.close()
    assert cut >= 2  # the worker's connections were there to cut, each time
    assert_ran_once(lines)
    assert_stream_is_the_log(got, lines)


@pytest.mark.slow
async def test_cancel_and_retry_reach_the_worker_and_a_stopped_worker_hands_its_job_over(
    tmp_path: Path, pg_url: str
) -> None:
    env = {"AURA_LEASE_SECONDS": LEASE_SECONDS, "AURA_ARTIFACTS_DIR": str(tmp_path / "files")}
    with (
        aura_serve(tmp_path / "api", "--database-url", pg_url, "--no-worker", **env) as api,
        aura_worker(tmp_path / "first", pg_url, **env) as first,
    ):
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{api.port}") as session:
            job = await submit(session)
            got: list[SseEvent] = []
            async with asyncio.timeout(BATCH_WAIT):
                while not step_running(got, "broll"):
                    await follow(session, job, got, {"StepStarted"})
                tools = await hold_tools(first)  # the b-roll cannot end before the cancel
                async with session.post(f"/api/jobs/{job}/cancel") as resp:
                    assert resp.status == 202, await resp.text()
                    assert (await resp.json())["status"] == "Canceled"
                # the worker saw the cancel on the log and stopped its b-roll's processes
                _gone, alive = psutil.wait_procs(tools, timeout=30)
                assert not alive, alive
                stops = [r for r in stderr_records(tmp_path / "first") if "stops" in r["message"]]
                assert [(r["level"], r["message"]) for r in stops] == [
                    ("INFO", f"job {job}: another process canceled it; its run here stops")
                ]  # a cancel is news, not a warning
                async with session.post(f"/api/jobs/{job}/retry") as resp:
                    assert resp.status == 202, await resp.text()
                while not step_running(got, "broll") or got[-1].data["attempt"] != 2:
                    await follow(session, job, got, {"StepStarted"})
                # a clean stop releases the lease: the next worker resumes the job
                await hold_tools(first)
                assert stop_serve(first.proc, signal.SIGTERM) == 0
                with aura_worker(tmp_path / "second", pg_url, **env):
                    await follow_to_end(session, job, got)
            lines = await job_log(session, job)
    types = [line["type"] for line in lines]
    assert types.count("JobCanceled") == 1 and types.count("JobRetryRequested") == 1, types
    assert [line["version"] for line in lines] == list(range(1, len(lines) + 1))
    assert types[-1] == "JobSucceeded" and types.count("JobSucceeded") == 1, types
    # the retry reused the narration; the handover resumed the job, reusing it again
    retried = [(x["type"], x["step"]) for x in lines[types.index("JobRetryRequested") :]]
    assert ("StepCanceled", "broll") in [(x["type"], x["step"]) for x in lines], types
    assert ("StepStarted", "narration") not in retried, retried
    assert ("JobInterrupted", "broll") in retried, retried
    assert_resumed_reusing_steps(lines)
    assert_stream_is_the_log(got, lines)


def stderr_records(data_dir: Path) -> list[dict[str, Any]]:
    """The JSON log records `aura_worker` put in its stderr file so far."""
    text = (data_dir.parent / f"{data_dir.name}-stderr.log").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_workers_and_an_api_without_one_need_the_log_in_postgres(tmp_path: Path) -> None:
    for command in (["worker"], ["serve", "--no-worker", "--port", "0"]):
        done = subprocess.run(
            [*AURA, *command, "--data-dir", str(tmp_path)],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (command, done.stderr)
        assert "PostgreSQL" in done.stderr and not (tmp_path / "aura.db").exists()
