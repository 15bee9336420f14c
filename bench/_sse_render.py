"""bench/sse.py case (d): subscribers following a real sample render, against a bare aiohttp
fan-out replaying the render's schedule while a niced x264 encode loads the cores.

Ours: a real `aura serve` (the CLI as it is, run by this module with a loop-lag probe added),
one render at a time (the default). A blocker render is submitted, then the measured one, which
waits in the queue while SUBSCRIBERS streams connect to it (bench/_sse_client.py, as the other
cases); the blocker is then canceled, so every event of the measured render from its start
reaches every subscriber live. Counted: every event whose `ts` is after the measured job's
submission (its `JobCreated` comes before: that is the replay). The floor: bench/sse.py's
`run_floor` pushing one frame at each of those events' `ts` offsets, as many subscribers, while
`nice -n <process_nice> ffmpeg ... -c:v libx264` encodes a test pattern for the whole run.

The loop-lag probe, in both servers' processes: a task sleeping LAG_TICK in a loop records how
late it wakes; reported for the render's span (its first to its last event). With
AURA_BENCH_SLOW_CALLBACK_MS set, the server also records each loop callback that ran longer
than that, with what it was (`python -m bench._sse_render` writes them beside the lag).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from ._common import REPEATS, fresh_dir, median, sized
from ._sse_result import Result, result_line
from ._table import QUICK, figure
from .sse import TARGET, Case, one_run, run_floor

__all__ = ["LagProbe", "main", "serve_with_probe"]

SUBSCRIBERS = sized(300, 10)
#: the blocker and, outside quick mode, the measured render: the sample at draft quality
SAMPLE = {"preset": "sample-hello-youtube", "options": {"quality": "draft", "encoder": "x264"}}
#: quick mode's measured render: two short lines
SHORT = {
    "preset": "default",
    "brief": {"title": "Bench", "script": ["One short line.", "And another."]},
    "options": {"quality": "draft", "encoder": "x264"},
}
#: seconds the probe sleeps between two wake-ups
LAG_TICK = 0.005
#: the floor's CPU load: a test pattern encoded as the renders encode, until stopped
X264 = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi"]
X264 += ["-i", "testsrc2=size=1280x720:rate=30", "-c:v", "libx264", "-preset", "veryfast"]
X264 += ["-f", "null", "-"]
_SLOW_ENV = "AURA_BENCH_SLOW_CALLBACK_MS"


class LagProbe:
    """How late a task sleeping LAG_TICK wakes: (epoch seconds, seconds late) per wake-up."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.slow: list[tuple[float, float, str]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        threshold = float(os.environ.get(_SLOW_ENV, "0")) / 1000
        if threshold > 0:
            self._time_callbacks(threshold)

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_TICK)
            self.samples.append((time.time(), time.perf_counter() - before - LAG_TICK))

    def _time_callbacks(self, threshold: float) -> None:
        """Every loop callback longer than `threshold` is recorded with what it ran."""
        original = asyncio.events.Handle._run
        slow = self.slow

        def timed(handle: asyncio.events.Handle) -> None:
            started = time.perf_counter()
            original(handle)
            took = time.perf_counter() - started
            if took > threshold:
                slow.append((time.time(), took, _describe(handle)))

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _describe(handle: asyncio.events.Handle) -> str:
    """What a callback ran: a task's step names the coroutine and where it stopped next."""
    owner = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
    if not isinstance(owner, asyncio.Task):
        return repr(handle)[:300]
    coro: Any = owner.get_coro()
    name = getattr(coro, "__qualname__", "?")
    where = ""
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        where = f"{coro.cr_code.co_qualname} line {coro.cr_frame.f_lineno}"
        coro = coro.cr_await
    return f"task {owner.get_name()}: {name}, now at {where or 'its end'}"


def serve_with_probe(lag_file: str, argv: list[str]) -> int:
    """`aura serve` as the CLI runs it, with a LagProbe on its loop; the samples go to
    `lag_file` once it stops."""
    from aura.cli import serve
    from aura.cli.main import main as aura_main

    probe = LagProbe()
    create_app = vars(serve)["create_app"]  # aura.http.app's, as serve imported it

    def with_probe(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)

        async def on_startup(_: Any) -> None:
            probe.start()

        app.on_startup.append(on_startup)
        return app

    vars(serve)["create_app"] = with_probe
    code = aura_main(argv)
    probe.stop()
    Path(lag_file).write_text(json.dumps({"lag": probe.samples, "slow": probe.slow}))
    return code


# ---- ours: the real server --------------------------------------------------------------------


class _Server:
    """The server process of one run; `cleanup` (one_run's end) reads the measured job's log
    and the blocker's status, then stops it and reads its lag samples."""

    def __init__(self, folder: Path) -> None:
        self.lag_file = folder / "lag.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
        env |= {k: v for k, v in os.environ.items() if k == _SLOW_ENV}
        argv = [sys.executable, "-m", "bench._sse_render", str(self.lag_file), "serve"]
        argv += ["--data-dir", str(folder / "data"), "--port", "0"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "127.0.0.1:" in line, line
        self.base = f"http://127.0.0.1:{int(line.split('127.0.0.1:', 1)[1].split()[0])}"
        self.log: list[dict[str, Any]] = []
        self.blocker_status = ""
        self.lag: dict[str, list[Any]] = {}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, json=body) as resp,
        ):
            assert resp.status < 300, (resp.status, await resp.text())
            return await resp.text()

    async def cleanup(self, job_id: str, blocker: str) -> None:
        try:
            lines = (await self.call("GET", f"/api/jobs/{job_id}/log")).splitlines()
            self.log = [json.loads(line) for line in lines]
            self.blocker_status = json.loads(await self.call("GET", f"/api/jobs/{blocker}"))[
                "status"
            ]
        finally:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.communicate(timeout=120)
        self.lag = json.loads(self.lag_file.read_text())


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class OursRun(msgspec.Struct):
    result: Result
    offsets: tuple[float, ...]  # of the counted events, from the first
    lag: list[float]
    slow: list[Any]


async def run_ours(case: Case) -> OursRun:
    server = _Server(fresh_dir("sse-render"))
    try:
        blocker = json.loads(await server.call("POST", "/api/jobs", SAMPLE))["jobId"]
        brief = SHORT if QUICK else SAMPLE
        job_id = json.loads(await server.call("POST", "/api/jobs", brief))["jobId"]
    except BaseException:  # one_run's cleanup stops it from here on
        server.proc.kill()
        server.proc.communicate(timeout=60)
        raise
    since = time.time()  # after the measured job's JobCreated; nothing else of it yet

    async def prepared(_: Case) -> tuple[list[str], Callable[[], Awaitable[None]], Any]:
        urls = [f"{server.base}/api/jobs/{job_id}/events"] * case.subscribers_per_job

        async def start() -> None:  # every stream is open: the measured render may begin
            await server.call("POST", f"/api/jobs/{blocker}/cancel")

        class Stop:
            async def cleanup(self) -> None:
                await server.cleanup(job_id, blocker)

        return urls, start, Stop()

    result = await one_run(case, prepared, since)
    if server.blocker_status != "Canceled":  # then the render began before every stream
        raise RuntimeError(f"the blocker render ended {server.blocker_status}, not Canceled")
    if server.log[-1]["type"] != "JobSucceeded":
        raise RuntimeError(f"the measured render ended {server.log[-1]['type']}")
    stamps = [_epoch(line["ts"]) for line in server.log if _epoch(line["ts"]) >= since]
    lost = len(stamps) * case.subscribers_per_job - result.received
    window = (stamps[0], stamps[-1])
    return OursRun(
        msgspec.structs.replace(result, lost=lost),
        tuple(t - stamps[0] for t in stamps),
        [lag for t, lag in server.lag["lag"] if window[0] <= t <= window[1]],
        [s for s in server.lag["slow"] if window[0] <= s[0] <= window[1]],
    )


# ---- the floor: bench/sse.py's bare fan-out under an x264 encode ------------------------------


async def run_floor_loaded(case: Case, nice: int) -> tuple[Result, list[float]]:
    encode = await asyncio.create_subprocess_exec(
        "nice", "-n", str(nice), *X264, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    probe = LagProbe()
    probe.start()
    began: list[float] = []

    async def floor(c: Case) -> tuple[list[str], Callable[[], Awaitable[None]], Any]:
        urls, start, runner = await run_floor(c)

        async def timed_start() -> None:
            began.append(time.time() + 0.2)  # publish() starts its schedule 0.2 s later
            await start()

        return urls, timed_start, runner

    try:
        result = await one_run(case, floor)
    finally:
        probe.stop()
        encode.terminate()
        await encode.wait()
    span = (began[0], began[0] + case.offsets[-1])  # the replay's, as the render's for ours
    return result, [lag for t, lag in probe.samples if span[0] <= t <= span[1]]


# ---- reporting ----------------------------------------------------------------------------------


def _pct(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1e3 if ordered else 0.0


def _lag_line(label: str, lags: list[list[float]]) -> str:
    def m(share: float) -> float:
        return median([_pct(lag, share) for lag in lags])

    return (
        f"  {label:<6} loop lag ({LAG_TICK * 1e3:g} ms sleeps) p50 {m(0.5):6.2f} ms  "
        f"p99 {m(0.99):6.2f} ms  max {median([max(lag or [0.0]) * 1e3 for lag in lags]):6.1f} ms"
    )


async def _bench() -> list[str]:
    from aura.engine.config.settings import Settings

    nice = Settings().process_nice
    name = f"d: {SUBSCRIBERS} subscribers, a real render"
    case = Case(name, 1, SUBSCRIBERS, 0.0)
    ours: list[OursRun] = []
    floor: list[tuple[Result, list[float]]] = []
    for _ in range(REPEATS):  # interleaved, so both see the same machine
        ours.append(await run_ours(case))
        replay = case._replace(offsets=ours[-1].offsets)
        floor.append(await run_floor_loaded(replay, nice))
    ratios = [o.result.append_p99 / f[0].append_p99 for o, f in zip(ours, floor, strict=True)]
    p99 = median([o.result.append_p99 for o in ours])
    floor_p99 = median([f[0].append_p99 for f in floor])
    ratio = p99 / floor_p99
    lost = sum(o.result.lost for o in ours)
    passed = ratio <= TARGET and lost == 0
    figure(
        f"{name}: ts->receipt p99",
        f"{p99:.2f} ms, lost {lost}",
        f"floor {floor_p99:.2f} ms (x264 load)",
        ratio,
        passed=passed,
        target=f"<= {TARGET}x, lost 0",
    )
    lag99 = median([_pct(o.lag, 0.99) for o in ours])
    figure(
        "d: server loop lag p99 during the render (info)",
        f"{lag99:.2f} ms",
        f"floor {median([_pct(f[1], 0.99) for f in floor]):.2f} ms",
    )
    block = [
        f"sse {name} ({len(ours[0].offsets)} events, median of {REPEATS}):",
        result_line("aura", [o.result for o in ours]),
        result_line("floor", [f[0] for f in floor]),
        _lag_line("aura", [o.lag for o in ours]),
        _lag_line("floor", [f[1] for f in floor]),
        f"  p99 ratio aura/floor {ratio:.2f}x (runs {' '.join(f'{r:.2f}' for r in ratios)}); "
        f"target <= {TARGET}x, lost 0: {'-' if QUICK else 'PASS' if passed else 'BELOW'}",
    ]
    for run in ours:
        for _, took, what in sorted(run.slow, key=lambda s: -s[1])[:5]:
            block.append(f"  slow callback {took * 1e3:6.1f} ms: {what}")
    print("\n".join(block), flush=True)
    return block


def main() -> list[str]:
    return asyncio.run(_bench())


if __name__ == "__main__":
    sys.exit(serve_with_probe(sys.argv[1], sys.argv[2:]))
