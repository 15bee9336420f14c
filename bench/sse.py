"""SSE fan-out: Aura's `GET /api/jobs/{id}/events` against a bare aiohttp floor, same load.

Cases, events appended through the store on a schedule, clients in other processes on
127.0.0.1: (a) 100 subscribers to one job, 500 events/s; (b) 1,000 subscribers to one job, 50
events/s; (c) 1,000 jobs with one subscriber each, 1 event/s per job. The floor is a bare
aiohttp SSE fan-out of pre-encoded frames at the same rates and counts; (d) subscribers
following a real render, against the floor replaying its events' times under an x264 encode
(bench/_sse_render.py; clients: bench/_sse_client.py). Cases (a) to (c) run on both logs in the
same run, SQLite and PostgreSQL (bench/_sse_backends.py). An event is committed before any
client sees it, so in case (c), every event its own commit, the floor publishes each event only
after a raw insert + commit of the same row in the same kind of database. Reported per case,
median of REPEATS runs: p50/p99 from append (the event's `ts`) to receipt and from the moment
the event was scheduled (an overloaded server slows its appender and hides its own lateness in
the first), events/s delivered, events lost (must be 0). Target: median p99 at most 1.5x the
floor's in (a), (b), (d), 1.25x the committing floor's in (c). `python -m bench sse`;
AURA_BENCH_SSE_SECONDS sets each run's length (default 4), AURA_BENCH_SSE_CASES picks cases
(e.g. `a,c`; default all four).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
from aiohttp import web

from aura.http.app import create_app
from aura.http.keys import ENGINE
from aura.projections.events import (
    Event,
    JobCreated,
    JobStarted,
    JobSucceeded,
    Output,
    StepProgressed,
    StepStarted,
)
from aura.store.interface import EventStore
from aura.store.log import QueuedAppend
from aura.store.rows import format_ts

from ._common import REPEATS, median, sized
from ._sse_backends import Backend, SqliteBackend, open_pg_backend
from ._sse_result import Result, merge, result_line
from ._table import QUICK, figure

__all__ = ["main"]

HOST = "127.0.0.1"
SECONDS = float(os.environ.get("AURA_BENCH_SSE_SECONDS", "0.5" if QUICK else "4"))
#: client processes sharing the connections (parsing 50k messages/s needs more than one)
CLIENT_PROCESSES = 2
TARGET = 1.5
#: case (c)'s, against a floor that commits each event as ours does
COMMIT_TARGET = 1.25


class Case(NamedTuple):
    name: str
    jobs: int
    subscribers_per_job: int
    rate_per_job: float
    #: seconds from the start of each event of job 0, when they replay a recorded schedule
    offsets: tuple[float, ...] = ()
    #: every event is its own commit: the floor commits each one before publishing it
    floor_commits: bool = False

    @property
    def target(self) -> float:
        return COMMIT_TARGET if self.floor_commits else TARGET

    @property
    def expected(self) -> int:
        """Measured events per job."""
        return len(self.offsets) if self.offsets else int(SECONDS * self.rate_per_job)


_MANY = sized(1000, 20)
_SLOW = 4.0 if QUICK else 1.0
CASES = (
    Case(f"a: {sized(100, 10)} subscribers, 1 job, 500 ev/s", 1, sized(100, 10), 500.0),
    Case(f"b: {_MANY} subscribers, 1 job, 50 ev/s", 1, _MANY, 50.0),
    # quick runs are too short for 1 ev/s: a job with no event would never finish
    Case(
        f"c: {_MANY} jobs x 1 subscriber, {_SLOW:g} ev/s each", _MANY, 1, _SLOW, floor_commits=True
    ),
)


# ---- the schedule: what both servers publish ------------------------------------------------


def schedule(case: Case, t0: float) -> list[tuple[float, int, int]]:
    """(when, job index, event number) of every measured event, in time order."""
    if case.offsets:
        return [(t0 + offset, 0, k) for k, offset in enumerate(case.offsets)]
    per_job = case.expected
    spread = 1.0 / case.rate_per_job / case.jobs
    items = [
        (t0 + k / case.rate_per_job + j * spread, j, k)
        for j in range(case.jobs)
        for k in range(per_job)
    ]
    items.sort()
    return items


async def publish(
    case: Case,
    emit: Callable[[int, float], Awaitable[None]],
    finish: Callable[[int], Awaitable[None]],
) -> None:
    """Emit each job's events at their scheduled time (each job in order), then finish jobs."""
    t0 = time.time() + 0.2
    by_job: dict[int, list[float]] = {}
    for when, j, _ in schedule(case, t0):
        by_job.setdefault(j, []).append(when)

    async def one_job(j: int, times: list[float]) -> None:
        for when in times:
            delay = when - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await emit(j, when)
        await finish(j)

    await asyncio.gather(*(one_job(j, times) for j, times in by_job.items()))


# ---- Aura: the real app, events appended through the store ----------------------------------


def _progress(when: float) -> StepProgressed:
    return StepProgressed(step="render", pct=50.0, message=repr(when), eta_seconds=1.0)


async def run_aura(
    case: Case, backend: Backend | None = None
) -> tuple[list[str], Callable[[], Awaitable[None]], Any]:
    settings = await (backend or SqliteBackend()).settings()
    app = create_app(settings, pipeline={})
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    log: EventStore = app[ENGINE].log
    jobs = [uuid.uuid4().hex for _ in range(case.jobs)]

    def start(job_id: str) -> list[Event]:
        created = JobCreated(preset="default", steps=("render",), correlation_id=job_id)
        return [created, JobStarted(), StepStarted(step="render")]

    # at once: group commit writes them in a few batches (one by one takes seconds on PostgreSQL)
    await asyncio.gather(*(log.append(job_id, start(job_id), 0) for job_id in jobs))
    versions = dict.fromkeys(range(case.jobs), len(start(jobs[0])))

    last: dict[int, QueuedAppend] = {}

    async def emit(j: int, when: float) -> None:
        # Queued, not awaited, as a job's run appends (engine/run/job_run.py), each chained after
        # the job's previous one; like the run, it keeps only its last append.
        queued = log.append_nowait(jobs[j], [_progress(when)], versions[j], after=last.get(j))
        last[j] = queued
        versions[j] += 1

    async def finish(j: int) -> None:
        # Chained to the job's last progress without waiting for its commit, as a run queues
        # its events (engine/run/job_run.py); here both go in the same group commit, as the floor
        # pushes its terminal frame in the same loop turn as the last progress.
        output = Output(video_path="x.mp4", size_bytes=1, duration_seconds=1.0, sha256="0")
        done = [JobSucceeded(output=output)]
        await log.append_nowait(jobs[j], done, versions[j], after=last.get(j)).future

    urls = [
        f"http://{HOST}:{port}/api/jobs/{job_id}/events"
        for job_id in jobs
        for _ in range(case.subscribers_per_job)
    ]
    return urls, lambda: publish(case, emit, finish), runner


# ---- the floor: bare aiohttp, pre-encoded frames --------------------------------------------


class _Sub:
    __slots__ = ("pending", "wake")

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.wake = asyncio.Event()


async def run_floor(
    case: Case, backend: Backend | None = None
) -> tuple[list[str], Callable[[], Awaitable[None]], Any]:
    """The bare fan-out; where the case says so, each event is committed (in `backend`'s kind of
    database) before it is published."""
    commit = await (backend or SqliteBackend()).committer() if case.floor_commits else None
    subs: dict[int, set[_Sub]] = {j: set() for j in range(case.jobs)}
    seqs = [0]
    versions = [0] * case.jobs
    encoder = msgspec.json.Encoder()

    async def handler(request: web.Request) -> web.StreamResponse:
        sub = _Sub()
        subs[int(request.match_info["j"])].add(sub)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"id: 0\nevent: job-status\ndata: {}\n\n")
        try:
            while True:
                await sub.wake.wait()
                sub.wake.clear()
                frames, sub.pending = sub.pending, []
                await resp.write(b"".join(frames))
                if frames and frames[-1].startswith(b"id: -1"):
                    return resp
        finally:
            subs[int(request.match_info["j"])].discard(sub)

    def push(j: int, frame: bytes) -> None:
        for sub in subs[j]:
            sub.pending.append(frame)
            sub.wake.set()

    async def emit(j: int, when: float) -> None:
        seqs[0] += 1
        seq = seqs[0]
        now = datetime.now(UTC)
        data = encoder.encode(
            {
                "jobId": str(j),
                "type": "StepProgressed",
                "ts": format_ts(now),
                "step": "render",
                "progressPct": 50.0,
                "etaSeconds": 1.0,
                "message": repr(when),
            }
        )
        if commit is not None:
            versions[j] += 1
            await commit.commit(seq, str(j), versions[j], now, data.decode())
        push(j, f"id: {seq}\nevent: step-progress\ndata: ".encode() + data + b"\n\n")

    async def finish(j: int) -> None:
        push(j, b"id: -1\nevent: job-completed\ndata: {}\n\n")

    app = web.Application()
    app.router.add_get("/events/{j}", handler)
    if commit is not None:
        app.on_cleanup.append(lambda _: commit.close())
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    urls = [
        f"http://{HOST}:{port}/events/{j}"
        for j in range(case.jobs)
        for _ in range(case.subscribers_per_job)
    ]
    return urls, lambda: publish(case, emit, finish), runner


# ---- one run: clients in other processes --------------------------------------------------------


async def one_run(
    case: Case, server: Callable[[Case], Awaitable[Any]], since: float | None = None
) -> Result:
    """One run; with `since`, every event from then on counts (bench/_sse_client.py)."""
    urls, start, runner = await server(case)
    procs: list[asyncio.subprocess.Process] = []
    try:
        client = ["-m", "bench._sse_client", str(case.expected)]
        client += [] if since is None else [repr(since)]
        parts = [urls[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)]
        procs += [
            await asyncio.create_subprocess_exec(
                sys.executable,
                *client,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for _ in parts
        ]
        for proc, part in zip(procs, parts, strict=True):
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(part).encode() + b"\n")
            await proc.stdin.drain()
        for proc in procs:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
        started = time.time()
        await start()
        outputs = [json.loads((await p.communicate())[0]) for p in procs]
        elapsed = time.time() - started
    finally:
        for proc in procs:  # a run that failed leaves no client behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await runner.cleanup()
    return merge(outputs, elapsed)


async def _bench(cases: list[Case]) -> list[str]:
    lines = []
    async with contextlib.AsyncExitStack() as stack:
        backends: list[Backend] = [SqliteBackend(), await open_pg_backend(stack)]
        for case in cases:
            for backend in backends:
                try:
                    lines += await _bench_case(case, backend)
                except backend.errors as e:  # the database failed: a failed figure
                    failure = backend.failure or f"{type(e).__name__}: {e}"
                    figure(f"{backend.name} {case.name}", f"FAILED: {failure}"[:120], passed=False)
    return lines


async def _bench_case(case: Case, backend: Backend) -> list[str]:
    if backend.failure is not None:
        raise OSError(backend.failure)
    ours: list[Result] = []
    floor: list[Result] = []
    for _ in range(REPEATS):  # interleaved, so both see the same machine
        ours.append(await one_run(case, functools.partial(run_aura, backend=backend)))
        floor.append(await one_run(case, functools.partial(run_floor, backend=backend)))
    ratio = median([o.append_p99 for o in ours]) / median([f.append_p99 for f in floor])
    sched_ratio = median([o.sched_p99 for o in ours]) / median([f.sched_p99 for f in floor])
    lost = sum(r.lost for r in ours)
    passed = ratio <= case.target and sched_ratio <= case.target and lost == 0
    verdict = "-" if QUICK else "PASS" if passed else "BELOW"
    floor_name = "committing floor" if case.floor_commits else "floor"
    figure(
        f"{backend.name} {case.name}: append->receipt p99",
        f"{median([o.append_p99 for o in ours]):.2f} ms, lost {lost}",
        f"{floor_name} {median([f.append_p99 for f in floor]):.2f} ms",
        ratio,
        passed=passed,
        target=f"<= {case.target}x (scheduled too), lost 0",
    )
    block = [
        f"sse {backend.name} {case.name} ({SECONDS:g} s runs, median of {REPEATS}):",
        result_line("aura", ours),
        result_line("floor", floor),
        f"  p99 ratio aura/{floor_name}: append {ratio:.2f}x, scheduled {sched_ratio:.2f}x; "
        f"target <= {case.target}x, lost 0: {verdict}",
    ]
    print("\n".join(block), flush=True)
    return block


def main() -> None:
    wanted = os.environ.get("AURA_BENCH_SSE_CASES", "a,b,c,d").split(",")
    asyncio.run(_bench([c for c in CASES if c.name[0] in wanted]))
    if "d" in wanted:
        from . import _sse_render  # case (d), a real render: its own module

        _sse_render.main()


if __name__ == "__main__":
    main()
