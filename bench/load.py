"""Load: RENDERS sample renders submitted at once to a real `aura serve` (AURA_MAX_CONCURRENT_JOBS
at a time, the rest queued) while SUBSCRIBERS SSE clients follow one of them.

The followed job is the first one queued: every subscriber connects before it starts, and it
renders beside another render with the queue still full. Printed: the total time (from the
submissions to the last job's end), the server process's peak resident memory (VmHWM, and the
most psutil saw sampling every RSS_EVERY seconds), the append latency under that load, whether
every job ended Succeeded, and whether every subscriber received exactly the job's log (every
event, in order, once).

Append latency is timed inside the server (bench/_load_server.py wraps its appends): from each
append's call to the moment it is committed and its appender may go on, for every append the
renders make. An event's `ts` cannot give it (the store stamps it at the commit, so it says
nothing of the wait before), and a writer in another process would time SQLite's lock, not the
server's queue. Not a pass/fail test; run it once or twice at most on a shared machine:
`python -m bench load` (a few minutes).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import msgspec
import psutil  # type: ignore[import-untyped]

from ._common import fresh_dir, sized
from ._table import figure

__all__ = ["main"]

RENDERS = sized(20, 1)
SUBSCRIBERS = sized(1000, 10)
CONCURRENCY = 2
#: seconds between two samples of the server's memory
RSS_EVERY = 0.05
#: a sample render at the quickest quality
BODY = {"preset": "sample-hello-youtube", "options": {"quality": "draft", "encoder": "x264"}}
_DECODER = msgspec.json.Decoder()


class Stream(NamedTuple):
    #: (id, type) of each message, in order
    events: list[tuple[int, str]]
    #: seconds from each event's `ts` to its receipt
    delays: list[float]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def _allow_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


async def _read(resp: aiohttp.ClientResponse) -> Stream:
    """A stream's messages until it ends."""
    events: list[tuple[int, str]] = []
    delays: list[float] = []
    buffer = b""
    async for chunk in resp.content.iter_any():
        now = time.time()
        buffer += chunk
        *blocks, buffer = buffer.split(b"\n\n")
        for block in blocks:
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"data" not in fields:
                continue  # a comment or a lone retry
            data = _DECODER.decode(fields[b"data"])
            events.append((int(fields[b"id"]), data["type"]))
            delays.append(now - datetime.fromisoformat(data["ts"]).timestamp())
    return Stream(events, delays)


async def _log(session: aiohttp.ClientSession, base: str, job_id: str) -> list[tuple[int, str]]:
    async with session.get(f"{base}/api/jobs/{job_id}/log") as resp:
        lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    return [(line["seq"], line["type"]) for line in lines]


async def _sample_rss(pid: int, peak: list[int], done: asyncio.Event) -> None:
    process = psutil.Process(pid)
    while not done.is_set():
        peak[0] = max(peak[0], process.memory_info().rss)
        await asyncio.sleep(RSS_EVERY)


class Outcome(NamedTuple):
    seconds: float
    statuses: list[str]
    lost: int  # subscribers whose messages are not exactly the log
    watched_queued: bool  # every subscriber connected before the job started
    delays: list[float]


async def _drive(base: str, pid: int, peak: list[int]) -> Outcome:
    done = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(pid, peak, done))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(session.post(f"{base}/api/jobs", json=BODY) for _ in range(RENDERS))
        )
        assert all(a.status == 201 for a in answers), [a.status for a in answers]
        async with session.get(f"{base}/api/jobs?limit={RENDERS}") as resp:
            queue_order = [j["jobId"] for j in reversed((await resp.json())["jobs"])]
        watched = queue_order[min(CONCURRENCY, RENDERS - 1)]
        url = f"{base}/api/jobs/{watched}/events"
        subscribers = await asyncio.gather(*(session.get(url) for _ in range(SUBSCRIBERS)))
        async with session.get(f"{base}/api/jobs/{watched}") as resp:
            watched_queued = (await resp.json())["status"] == "Queued"
        followers = [session.get(f"{base}/api/jobs/{j}/events") for j in queue_order]
        ends = await asyncio.gather(*followers)
        received, _ = await asyncio.gather(
            asyncio.gather(*(_read(s) for s in subscribers)),
            asyncio.gather(*(_read(e) for e in ends)),
        )
        seconds = time.perf_counter() - started
        statuses = []
        for job_id in queue_order:
            async with session.get(f"{base}/api/jobs/{job_id}") as resp:
                statuses.append((await resp.json())["status"])
        log = await _log(session, base, watched)
        lost = sum(stream.events != log for stream in received)
    done.set()
    await sampler
    delays = [d for stream in received for d in stream.delays]
    return Outcome(seconds, statuses, lost, watched_queued, delays)


def _peak_of(pid: int) -> int | None:
    """The process's peak resident set (Linux's VmHWM), bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _serve(data_dir: Path, times: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    env |= {"AURA_MAX_CONCURRENT_JOBS": str(CONCURRENCY)}
    argv = [sys.executable, "-m", "bench._load_server", str(times), "serve"]
    argv += ["--data-dir", str(data_dir), "--port", "0"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "127.0.0.1:" in line, line
    return proc, f"http://127.0.0.1:{int(line.split('127.0.0.1:', 1)[1].split()[0])}"


def _report(outcome: Outcome, peak: int | None, sampled: int, appends: list[float]) -> list[str]:
    mib = 1 << 20
    succeeded = outcome.statuses.count("Succeeded")
    p50, p99 = _percentile(appends, 0.5), _percentile(appends, 0.99)
    delay99 = _percentile(outcome.delays, 0.99)
    lines = [
        f"{RENDERS} sample renders submitted at once ({CONCURRENCY} at a time), {SUBSCRIBERS} "
        f"subscribers to one: all ended in {outcome.seconds:.1f} s; {succeeded} of {RENDERS} "
        f"Succeeded ({', '.join(sorted(set(outcome.statuses)))})",
        f"subscribers whose messages are not exactly the job's log: {outcome.lost} of "
        f"{SUBSCRIBERS} (all connected before the job started: {outcome.watched_queued}); "
        f"event ts to receipt p99 {delay99 * 1e3:.0f} ms over {len(outcome.delays):,} messages",
        f"server peak RSS {(peak or sampled) / mib:.0f} MiB (VmHWM; psutil's highest sample "
        f"{sampled / mib:.0f} MiB)",
        f"append latency under that load ({len(appends):,} appends): p50 {p50 * 1e3:.2f} ms, "
        f"p99 {p99 * 1e3:.2f} ms, max {max(appends or [0.0]) * 1e3:.1f} ms",
    ]
    for line in lines:
        print(line, flush=True)
    figure(
        f"{RENDERS} renders at once, {SUBSCRIBERS} subscribers: every job Succeeded, none lost",
        f"{succeeded}/{RENDERS} Succeeded, {outcome.lost} lost",
        passed=succeeded == RENDERS and outcome.lost == 0,
        target="all Succeeded, 0 lost",
    )
    figure("load: total time (info)", f"{outcome.seconds:.1f} s")
    figure("load: server peak RSS (info)", f"{(peak or sampled) / mib:.0f} MiB")
    figure("load: append latency p99 (info)", f"{p99 * 1e3:.2f} ms", f"p50 {p50 * 1e3:.2f} ms")
    return lines


def main() -> list[str]:
    _allow_open_files(2 * (SUBSCRIBERS + RENDERS) + 256)
    folder = fresh_dir("load")
    times = folder / "append-seconds.json"
    proc, base = _serve(folder / "data", times)
    peak_sampled = [0]
    try:
        outcome = asyncio.run(_drive(base, proc.pid, peak_sampled))
        peak = _peak_of(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    appends: list[Any] = json.loads(times.read_text()) if times.exists() else []
    return _report(outcome, peak, peak_sampled[0], appends)


if __name__ == "__main__":
    main()
