"""Orchestration overhead, recovery and cancel: the Aura engine against DBOS Transact on SQLite.

(a) per-step overhead of a 5-step pipeline of no-op steps, every transition recorded durably,
    one job at a time and 10 at once. DBOS commits each step's checkpoint before the next step
    starts. Aura queues a run's transitions and awaits durability only for the terminal event
    (engine/run/job_run.py): every transition is in the log when the job is reported finished, but
    steps that never wait share one group commit. So an info line also times steps that wait
    once (`await asyncio.sleep(0)`), where each step's StepStarted is committed as it starts:
    one commit per step, as on the DBOS side;
(b) time from engine start to an interrupted job's step running again (each side is killed with
    SIGKILL in a child process mid-step, then started again in a fresh child that times itself
    from just before the engine is opened / launched to the step running);
(c) time from cancel to the step's running subprocess being gone.

Both sides use SQLite in WAL mode with synchronous=NORMAL (an acknowledged write survives a crash
of the process). Then (a) on PostgreSQL against DBOS on the same server, and a worker's death
(bench/_orchestration_pg.py). Medians of REPEATS runs, interleaved. Run: `python -m bench
orchestration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from aura.engine.config.inputs import STEP_NAMES, JobRequest, Options
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.run.context import Step, StepContext
from aura.engine.tools.process import run_process
from aura.projections.events import Artifact
from bench._common import REPEATS, fresh_dir, median, sized
from bench._orchestration_pg import pg_main
from bench._table import QUICK, figure

__all__ = ["main"]

SEQUENTIAL_JOBS = sized(40, 4)
CONCURRENT = sized(10, 2)
CONCURRENT_ROUNDS = sized(4, 1)
REQUEST = JobRequest(options=Options(quality="draft"))
#: the grace period the cancel target refers to (Settings.kill_grace_seconds)
GRACE = Settings().kill_grace_seconds


# ---- Aura ------------------------------------------------------------------------------------


async def _noop(ctx: StepContext) -> list[Artifact]:
    return []


async def _wait_once(ctx: StepContext) -> list[Artifact]:
    await asyncio.sleep(0)  # the group commit takes the step's StepStarted here
    return []


NOOP_PIPELINE = dict.fromkeys(STEP_NAMES, _noop)
WAITING_PIPELINE = dict.fromkeys(STEP_NAMES, _wait_once)


async def _aura_overhead(
    data_dir: Path, jobs: int, at_once: int, pipeline: Mapping[str, Step] = NOOP_PIPELINE
) -> float:
    """Seconds per step: `jobs` five-step jobs of `pipeline`, `at_once` submitted together."""
    settings = Settings(data_dir=data_dir, max_concurrent_jobs=at_once)
    engine = await Engine.open(settings, pipeline=pipeline)
    try:
        started = time.perf_counter()
        for _ in range(jobs // at_once):
            await asyncio.gather(*(engine.submit(REQUEST) for _ in range(at_once)))
            await engine.run_until_idle()
        elapsed = time.perf_counter() - started
    finally:
        await engine.close()
    return elapsed / (jobs * len(STEP_NAMES))


async def _aura_cancel(data_dir: Path) -> float:
    """Seconds from cancel() to the running `sleep` child being gone."""

    async def sleeper(ctx: StepContext) -> list[Artifact]:
        await run_process(["sleep", "60"], ctx.settings)
        return []

    settings = Settings(data_dir=data_dir, kill_grace_seconds=GRACE)
    engine = await Engine.open(settings, pipeline={**NOOP_PIPELINE, "broll": sleeper})
    try:
        job_id = (await engine.submit(REQUEST)).job.job_id
        pid = await asyncio.to_thread(_wait_child, "sleep")
        started = time.perf_counter()
        gone = asyncio.create_task(asyncio.to_thread(_wait_gone, pid, started))
        await engine.cancel(job_id)
        return await gone
    finally:
        await engine.close()


# ---- DBOS ------------------------------------------------------------------------------------


def _dbos_config(data_dir: Path) -> dict[str, Any]:
    """DBOS on SQLite, set up as Aura's log is."""
    import sqlalchemy as sa

    url = f"sqlite:///{data_dir / 'dbos.sqlite'}"
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _record: Any) -> None:
        conn.isolation_level = "IMMEDIATE"  # as DBOS sets up its own SQLite engine
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")

    return {
        "name": "aura-bench",
        "system_database_url": url,
        "system_database_engine": engine,
        "log_level": "WARNING",
    }


class _Dbos:
    """One launched DBOS with a 5-step no-op workflow and a workflow running `sleep`."""

    def __init__(self, config: dict[str, Any]) -> None:
        from dbos import DBOS

        DBOS.destroy()
        self.dbos = DBOS
        DBOS(config=config)  # type: ignore[arg-type]

        @DBOS.step()
        def noop_step() -> None:
            return None

        @DBOS.workflow()
        def five_steps() -> None:
            for _ in STEP_NAMES:
                noop_step()

        @DBOS.step()
        def sleep_step() -> None:
            subprocess.run(["sleep", "60"], check=False)

        @DBOS.workflow()
        def sleeper() -> None:
            sleep_step()

        self.five_steps: Callable[[], None] = five_steps
        self.sleeper: Callable[[], None] = sleeper
        DBOS.launch()

    def overhead(self, jobs: int, at_once: int) -> float:
        started = time.perf_counter()
        if at_once == 1:
            for _ in range(jobs):
                self.five_steps()
        else:
            for _ in range(jobs // at_once):
                handles = [self.dbos.start_workflow(self.five_steps) for _ in range(at_once)]
                for handle in handles:
                    handle.get_result()
        return (time.perf_counter() - started) / (jobs * len(STEP_NAMES))

    def cancel(self) -> float:
        """Seconds from cancel_workflow to the sleep child gone; inf if it outlives the grace."""
        handle = self.dbos.start_workflow(self.sleeper)
        pid = _wait_child("sleep")
        started = time.perf_counter()
        self.dbos.cancel_workflow(handle.workflow_id)
        try:
            return _wait_gone(pid, started, limit=GRACE + 1.0)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # DBOS left it running: end it for the next run

    def close(self) -> None:
        self.dbos.destroy(workflow_completion_timeout_sec=0)


# ---- processes -------------------------------------------------------------------------------


def _wait_child(name: str, limit: float = 30.0) -> int:
    deadline = time.monotonic() + limit
    me = psutil.Process()
    while time.monotonic() < deadline:
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name() == name and child.status() != psutil.STATUS_ZOMBIE:
                    return int(child.pid)
        time.sleep(0.001)
    raise TimeoutError(f"no {name} child appeared")


def _wait_gone(pid: int, started: float, limit: float = 30.0) -> float:
    """Seconds from `started` until `pid` has exited (a zombie counts as gone)."""
    while time.perf_counter() - started < limit:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.0005)
    else:
        return float("inf")
    return time.perf_counter() - started


def _child(args: list[str]) -> None:
    """In a child process: `crash SYSTEM DIR` runs a job into its blocking step (the parent
    SIGKILLs it); `resume SYSTEM DIR` starts the engine and prints the seconds to the step."""
    phase, system, data_dir = args[0], args[1], Path(args[2])
    if system == "aura":
        asyncio.run(_aura_child(phase, data_dir))
    else:
        _dbos_child(phase, data_dir)


async def _aura_child(phase: str, data_dir: Path) -> None:
    reached = asyncio.Event()

    async def blocking(ctx: StepContext) -> list[Artifact]:
        reached.set()
        if phase == "crash":
            await asyncio.Event().wait()
        return []

    settings = Settings(data_dir=data_dir)
    started = time.perf_counter()
    engine = await Engine.open(settings, pipeline={**NOOP_PIPELINE, "broll": blocking})
    if phase == "crash":
        await engine.submit(REQUEST)
    await reached.wait()
    print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
    if phase == "crash":
        await asyncio.Event().wait()  # the parent kills us here
    await engine.run_until_idle()
    await engine.close()


def _dbos_child(phase: str, data_dir: Path) -> None:
    from dbos import DBOS

    reached = threading.Event()
    DBOS(config=_dbos_config(data_dir))  # type: ignore[arg-type]

    @DBOS.step()
    def first() -> None:
        return None

    @DBOS.step()
    def blocking() -> None:
        reached.set()
        if phase == "crash":
            threading.Event().wait()

    @DBOS.workflow()
    def workflow() -> None:
        first()
        blocking()

    started = time.perf_counter()
    DBOS.launch()
    if phase == "crash":
        DBOS.start_workflow(workflow)
    reached.wait()
    print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
    if phase == "crash":
        threading.Event().wait()
    DBOS.destroy(workflow_completion_timeout_sec=5)


def _recovery(system: str, data_dir: Path) -> float:
    """Crash a child mid-step with SIGKILL, start another on the same data: its seconds."""
    command = [sys.executable, "-m", "bench.orchestration", "child"]
    root = Path(__file__).resolve().parents[1]
    with subprocess.Popen(
        [*command, "crash", system, str(data_dir)], cwd=root, stdout=subprocess.PIPE, text=True
    ) as crashing:
        assert crashing.stdout is not None
        crashing.stdout.readline()  # the step is running
        crashing.send_signal(signal.SIGKILL)
        crashing.wait()
    resumed = subprocess.run(
        [*command, "resume", system, str(data_dir)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seconds: float = json.loads(resumed.stdout.splitlines()[0])["seconds"]
    return seconds


# ---- report ----------------------------------------------------------------------------------


def _line(label: str, ours: float, theirs: float, target: float | None) -> None:
    """Print and record ours against DBOS (seconds), judged as `target`x less (None: info)."""
    ratio = theirs / ours if ours > 0 else float("inf")
    verdict = "-" if QUICK or target is None else "PASS" if ratio >= target else "BELOW"
    print(
        f"{label}: aura {ours * 1e3:.3f} ms vs DBOS {theirs * 1e3:.3f} ms "
        f"= {ratio:.1f}x less (target {target or '-'}x: {verdict})",
        flush=True,
    )
    figure(label, f"{ours * 1e3:.3f} ms", f"DBOS {theirs * 1e3:.3f} ms", ratio, at_least=target)


def main() -> None:
    results: dict[str, list[float]] = {}

    def record(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    dbos = _Dbos(_dbos_config(fresh_dir("orchestration-dbos")))
    try:
        for i in range(REPEATS):
            aura_dir = fresh_dir(f"orchestration-aura-{i}")
            record("aura_seq", asyncio.run(_aura_overhead(aura_dir / "a", SEQUENTIAL_JOBS, 1)))
            record("dbos_seq", dbos.overhead(SEQUENTIAL_JOBS, 1))
            waiting = _aura_overhead(aura_dir / "w", SEQUENTIAL_JOBS, 1, WAITING_PIPELINE)
            record("aura_seq_wait", asyncio.run(waiting))
            jobs = CONCURRENT * CONCURRENT_ROUNDS
            record("aura_par", asyncio.run(_aura_overhead(aura_dir / "b", jobs, CONCURRENT)))
            record("dbos_par", dbos.overhead(jobs, CONCURRENT))
            record("aura_cancel", asyncio.run(_aura_cancel(aura_dir / "c")))
            record("dbos_cancel", dbos.cancel())
    finally:
        dbos.close()
    for i in range(REPEATS):
        record("aura_recover", _recovery("aura", fresh_dir(f"orchestration-recover-aura-{i}")))
        record("dbos_recover", _recovery("dbos", fresh_dir(f"orchestration-recover-dbos-{i}")))

    m = {key: median(values) for key, values in results.items()}
    for key, values in results.items():
        print(f"  {key}: " + " ".join(f"{v * 1e3:.3f}" for v in values) + " ms", flush=True)
    _line("(a) per-step overhead, sequential", m["aura_seq"], m["dbos_seq"], 10)
    _line(f"(a) per-step overhead, {CONCURRENT} jobs at once", m["aura_par"], m["dbos_par"], 10)
    _line(
        "(a, info) sequential, steps that wait once (a commit per step)",
        m["aura_seq_wait"],
        m["dbos_seq"],
        None,
    )
    print(
        f"    five-step jobs/s, sequential: aura {1 / (5 * m['aura_seq']):.0f}, "
        f"DBOS {1 / (5 * m['dbos_seq']):.0f}",
        flush=True,
    )
    recover, dbos_recover = m["aura_recover"], m["dbos_recover"]
    verdict = "-" if QUICK else "PASS" if recover < 0.1 else "MISS"
    print(
        f"(b) start to interrupted step running: aura {recover * 1e3:.3f} ms vs DBOS "
        f"{dbos_recover * 1e3:.3f} ms = {dbos_recover / recover:.1f}x less "
        f"(target < 100 ms: {verdict})",
        flush=True,
    )
    figure(
        "(b) start to interrupted step running",
        f"{recover * 1e3:.3f} ms",
        f"DBOS {dbos_recover * 1e3:.3f} ms",
        dbos_recover / recover,
        passed=recover < 0.1,
        target="< 100 ms",
    )
    dbos_cancel = "not gone" if m["dbos_cancel"] == float("inf") else f"{m['dbos_cancel']:.3f} s"
    verdict = "-" if QUICK else "PASS" if m["aura_cancel"] < GRACE else "MISS"
    print(
        f"(c) cancel to subprocess gone: aura {m['aura_cancel'] * 1e3:.1f} ms; "
        f"DBOS {dbos_cancel} within {GRACE + 1.0:.0f} s (target < grace {GRACE:.0f} s: {verdict})",
        flush=True,
    )
    figure(
        "(c) cancel to subprocess gone",
        f"{m['aura_cancel'] * 1e3:.1f} ms",
        f"DBOS {dbos_cancel}",
        passed=m["aura_cancel"] < GRACE,
        target=f"< grace {GRACE:.0f} s",
    )
    # DBOS's home backend: its system database on the same PostgreSQL server as Aura's log
    config = {"name": "aura-bench", "log_level": "WARNING"}
    pg_main(lambda url: _Dbos({**config, "system_database_url": url}), NOOP_PIPELINE, _line)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        _child(sys.argv[2:])
    else:
        main()
