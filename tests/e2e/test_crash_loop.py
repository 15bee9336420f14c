"""Crash loop: a real `aura serve` SIGKILLed 20 times at random moments of real renders, and
started again on the same data folder.

A kill lands a random time after a start, right as progress ticks arrive (the log taking an
append burst), right as a step ends, or just after a retry of a failed or canceled job was
acknowledged. After each kill, and again once the server is back, the test checks what the
crash left and what recovery made of it: the log passes `PRAGMA integrity_check` and holds
every event and job view a client was shown, unchanged, with contiguous versions; no process
of the data folder (ffmpeg, espeak-ng) outlives the server; no zero-byte file exists and every
temp file is gone once recovery ran; every job the crash caught running was put back to work.
At the end every job has ended as it should, its view equals the fold of its `/log`, and the
stream its client followed across all the restarts is its log exactly.

The seed of the kill schedule is printed; CRASH_LOOP_SEED=N replays a schedule (the moments a
kill meets also depend on the machine's timing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from render_helpers import leftovers

from aura.projections.events import JobInterrupted, Recorded
from aura.projections.job import JobState, fold
from aura.tests.e2e.crash_checks import (
    check_recovered,
    check_shown,
    crash_left,
    kill_server,
    no_folder_processes,
    outputs_intact,
    read_log,
    records_of,
    view_of,
)
from aura.tests.e2e.raw_http import Served, start_serve, stop_serve
from aura.tests.e2e.sse_client import SseEvent, SseParser, assert_stream_is_the_log

KILLS = 20
SEED_ENV = "CRASH_LOOP_SEED"
#: b-roll and mux last long enough for ffmpeg to report progress (every 0.5 s) a few times
BRIEF = {
    "title": "Crash loop",
    "script": [
        "A line long enough for ffmpeg to report its progress.",
        "And a second one, to make the b-roll last a little.",
    ],
}
#: the quickest real render: draft x264, subtitles not burned in
OPTIONS: dict[str, Any] = {"quality": "draft", "encoder": "x264", "subtitles": "soft"}
#: a job whose b-roll always runs out of time: it fails, is retried, and fails again clearly
DOOMED = OPTIONS | {"timeouts": {"broll": 0.1}}
DOOMED_CODE = "StepTimeout:broll"
ENV = {"AURA_MAX_CONCURRENT_JOBS": "2", "AURA_FFMPEG_THREADS": "1"}
#: generous limit on anything awaited (CI machines are slow and shared)
WAIT = 60.0
TERMINAL = {"Succeeded", "Failed", "Canceled"}


@dataclass
class Seen:
    """What the client was shown, across all the server's lives."""

    data_dir: Path
    jobs: list[str] = field(default_factory=list)
    doomed: str = ""
    #: each job's SSE messages in the order received (resumed by Last-Event-ID after a restart)
    messages: dict[str, list[SseEvent]] = field(default_factory=dict)
    #: every job view the server answered (POST and GET)
    views: list[dict[str, Any]] = field(default_factory=list)
    views_checked: int = 0
    #: the server's runs, the last one current
    lives: list[Life] = field(default_factory=list)
    #: messages received of each kind that a kill may wait for (see `kind_of`)
    counts: dict[str, int] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Life:
    """One run of the server: its process, a client session, a stream follower per job."""

    def __init__(self, served: Served, seen: Seen) -> None:
        self.served = served
        self.seen = seen
        self.session = aiohttp.ClientSession(
            f"http://127.0.0.1:{served.port}", timeout=aiohttp.ClientTimeout(sock_connect=WAIT)
        )
        self.followers: dict[str, asyncio.Task[None]] = {}

    def follow(self, job_id: str) -> None:
        task = self.followers.get(job_id)
        if task is None or task.done():
            self.followers[job_id] = asyncio.create_task(self._follow(job_id))

    async def _follow(self, job_id: str) -> None:
        """Read the job's stream from the last message seen until it ends or the server dies."""
        got = self.seen.messages.setdefault(job_id, [])
        headers = {"Last-Event-ID": str(got[-1].id)} if got else {}
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):  # killed
            async with self.session.get(f"/api/jobs/{job_id}/events", headers=headers) as resp:
                if resp.status == 204:  # it had ended, and this client saw its end
                    return
                assert resp.status == 200, await resp.text()
                parser = SseParser()  # a message cut by the kill never completes
                async for chunk in resp.content.iter_any():
                    for message in parser.feed(chunk):
                        assert not got or message.id > got[-1].id, (job_id, got[-1], message)
                        got.append(message)
                        kind = kind_of(message)
                        self.seen.counts[kind] = self.seen.counts.get(kind, 0) + 1
                        self.seen.arrived.set()

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any] | None:
        """A job view the server answered (kept, to check against the log), or None for 409."""
        async with self.session.request(method, path, json=body) as resp:
            if resp.status == 409:
                return None
            assert resp.status in (200, 201, 202), (method, path, await resp.text())
            view: dict[str, Any] = await resp.json()
        self.seen.views.append(view)
        return view

    async def submit(self, options: dict[str, Any]) -> str:
        body = {"preset": "sample-hello-youtube", "brief": BRIEF, "options": options}
        view = await self.call("POST", "/api/jobs", body)
        assert view is not None
        self.seen.jobs.append(view["jobId"])
        self.follow(view["jobId"])
        return str(view["jobId"])

    async def views(self) -> list[dict[str, Any]]:
        return [v for j in self.seen.jobs if (v := await self.call("GET", f"/api/jobs/{j}"))]

    async def keep_busy(self) -> None:
        """A render to kill: a new job unless one (other than the doomed one) is active."""
        views = await self.views()
        if not any(v["status"] not in TERMINAL for v in views if v["jobId"] != self.seen.doomed):
            await self.submit(OPTIONS)

    async def end(self) -> None:
        """After the process is gone: the followers end on the cut connections."""
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*self.followers.values())
        await self.session.close()


# ---- the moments a kill lands ------------------------------------------------------------


async def after_a_while(life: Life, rng: random.Random) -> str:
    await asyncio.sleep(rng.uniform(0.0, 2.5))
    return "timer"


def kind_of(message: SseEvent) -> str:
    """`tick` (a progress tick), `step-done` (a step made its files), or the message's name."""
    if message.event == "step-progress":
        return "tick"
    data = message.data
    if message.event == "step-status" and data["status"] == "Succeeded":
        return "step-done" if data["step"] != "preflight" else "checked"
    return message.event


async def on_messages(life: Life, kind: str, count: int) -> bool:
    """Wait until `count` more messages of `kind` have arrived; False if none came for long."""
    seen = life.seen
    wanted = seen.counts.get(kind, 0) + count
    for _ in range(3):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while seen.counts.get(kind, 0) < wanted:
                    seen.arrived.clear()
                    await seen.arrived.wait()
                return True
        await life.keep_busy()  # the render ended meanwhile
    return False


async def on_progress_ticks(life: Life, rng: random.Random) -> str:
    """Right as the k-th next progress tick reaches the client (more are being appended)."""
    return "tick" if await on_messages(life, "tick", rng.randint(1, 3)) else "tick (none came)"


async def on_a_step_end(life: Life, rng: random.Random) -> str:
    """Right as a step's success reaches the client (its files made, its next step started)."""
    done = await on_messages(life, "step-done", rng.randint(1, 2))
    return "step end" if done else "step end (none came)"


async def during_a_retry(life: Life, rng: random.Random) -> str:
    """Just after a retry was acknowledged: a failed job's, or a running job's once canceled."""
    views = await life.views()
    retryable = [v["jobId"] for v in views if v["status"] in ("Failed", "Canceled")]
    running = [v["jobId"] for v in views if v["status"] == "Running"]
    running = [j for j in running if j != life.seen.doomed]
    if running and (not retryable or rng.random() < 0.5):
        canceled = await life.call("POST", f"/api/jobs/{rng.choice(running)}/cancel")
        if canceled is not None and canceled["status"] == "Canceled":
            retryable = [canceled["jobId"]]
    if not retryable:
        return await after_a_while(life, rng) + " (nothing to retry)"
    job_id = rng.choice(retryable)
    await life.call("POST", f"/api/jobs/{job_id}/retry")
    life.follow(job_id)
    await asyncio.sleep(rng.uniform(0.0, 0.6))
    return "retry"


Moment = Callable[[Life, random.Random], Awaitable[str]]
#: each kind of moment about as often, in an order the seed shuffles
MOMENTS: Sequence[Moment] = [after_a_while, on_progress_ticks, on_a_step_end, during_a_retry] * 5


# ---- the loop ----------------------------------------------------------------------------


def checked_log(
    seen: Seen, log: dict[str, list[Recorded]] | None = None
) -> dict[str, list[Recorded]]:
    """The log (read now, unless given), checked to hold all the client was shown."""
    log = read_log(seen.data_dir) if log is None else log
    check_shown(log, seen.messages, seen.views[seen.views_checked :])
    seen.views_checked = len(seen.views)  # each view once: the log only grows
    return log


async def start(seen: Seen, port: int) -> Life:
    served = await asyncio.to_thread(start_serve, seen.data_dir, port, (), ENV)
    life = Life(served, seen)
    seen.lives.append(life)
    for job_id in seen.jobs:
        life.follow(job_id)
    return life


async def kill(life: Life) -> int:
    """SIGKILL the server (see `kill_server`); how many tools it was running."""
    tools = await asyncio.to_thread(kill_server, life.served)
    await life.end()
    return tools


async def crash_loop(seen: Seen, rng: random.Random, report: list[str]) -> None:
    life = await start(seen, 0)
    port = life.served.port  # a restart listens where clients look for it
    seen.doomed = await life.submit(DOOMED)
    moments = rng.sample(MOMENTS, len(MOMENTS))
    for i, moment in enumerate(moments[:KILLS]):
        await life.keep_busy()
        label = await moment(life, rng)
        tools = await kill(life)
        report.append(f"kill {i + 1}: {label}, {tools} tool(s) running")
        await no_folder_processes(seen.data_dir)
        crash = crash_left(seen.data_dir, checked_log(seen))
        life = await start(seen, port)
        checked_log(seen, await check_recovered(seen.data_dir, crash, WAIT))


async def finish(seen: Seen) -> None:
    """Every job ends: the doomed one Failed with its code, the others Succeeded; each view is
    the fold of its /log, and each stream followed is its log exactly."""
    life = seen.lives[-1]
    async with asyncio.timeout(4 * WAIT):
        while not all(v["status"] in TERMINAL for v in await life.views()):
            await asyncio.gather(*life.followers.values())
            for job_id in seen.jobs:  # a retried job's stream had ended before its retry
                life.follow(job_id)
    for job_id in seen.jobs:
        view = await life.call("GET", f"/api/jobs/{job_id}")
        async with life.session.get(f"/api/jobs/{job_id}/log") as resp:
            assert resp.status == 200
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        assert view == view_of(records_of(job_id, lines))
        assert_stream_is_the_log(seen.messages[job_id], lines)  # across every restart
        codes = [e["code"] for e in view["errors"]]
        assert "Internal" not in codes, view["errors"]
        if job_id == seen.doomed:
            assert view["status"] == "Failed" and codes[-1] == DOOMED_CODE, view
        else:
            assert view["status"] == "Succeeded", view
    for records in checked_log(seen).values():
        state = fold(records)
        assert isinstance(state, JobState)
        outputs_intact(state)
    assert leftovers(seen.data_dir / "jobs") == []
    errors = ('"level":"ERROR"', '"level":"CRITICAL"', "Traceback")
    assert [x for x in life.served.log_lines() if any(e in x for e in errors)] == []


async def stop_last(seen: Seen) -> int | None:
    """SIGTERM the server if it runs; its exit status."""
    if not seen.lives or seen.lives[-1].served.proc.poll() is not None:
        return None
    life = seen.lives[-1]
    status = await asyncio.to_thread(stop_serve, life.served.proc, signal.SIGTERM)
    await life.end()
    return status


@pytest.mark.slow
async def test_sigkilled_mid_render_twenty_times_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"crash loop: {SEED_ENV}={seed}")
    seen, report = Seen(tmp_path / "data"), list[str]()
    try:
        await crash_loop(seen, random.Random(seed), report)
        await finish(seen)
    except AssertionError as e:
        raise AssertionError(f"{SEED_ENV}={seed}, after {report[-1:]}: {e}") from e
    finally:
        print("\n".join(report))
        status = await stop_last(seen)
    assert status == 0, seen.lives[-1].served.log_lines()[-20:]  # a clean stop
    await no_folder_processes(seen.data_dir)
    interrupted = sum(
        isinstance(r.event, JobInterrupted) for rs in read_log(seen.data_dir).values() for r in rs
    )
    print(f"{len(seen.jobs)} jobs, {interrupted} JobInterrupted")
    assert interrupted >= KILLS // 2  # most kills caught a render
