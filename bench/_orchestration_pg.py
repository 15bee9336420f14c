"""Orchestration on PostgreSQL (bench/orchestration.py runs it after the SQLite cases): the Aura
engine on its PostgreSQL log against DBOS Transact on the same server, and a worker's death.

(a) per-step overhead of the same 5-step no-op pipeline, one job at a time and CONCURRENT at
    once. Aura: `Engine.open` on a new schema of the bench's database, so its runner is the
    LeasedRunner `aura worker` runs: each job is claimed through its lease, run with fenced
    appends and released; a job is done when its JobSucceeded reaches a subscription to the
    log. DBOS: its system database a new database on the same server (its home backend).
(d) a worker's death: two workers (`aura worker`'s own loop, cli/worker.py `work`, with this
    bench's pipeline, whose `broll` step blocks) in processes of their own, a job submitted by
    an engine that runs none (as `aura serve --no-worker`); the worker whose step runs is
    SIGKILLed at a random moment of the lease's length after the step started (seeded per
    run); the figure is the seconds from the kill to that step running on the other worker,
    beside the lease's length: the lease runs out a lease after its last renewal (renewals
    every third of it), and the other worker tries a claim every third of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from aura.engine.config.inputs import STEP_NAMES, JobRequest, Options
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.run.context import Step, StepContext
from aura.projections.events import Artifact, JobCanceled, JobFailed, JobSucceeded
from aura.store.errors import StoreError
from aura.store.interface import EventStore

from ._common import REPEATS, fresh_dir, median, sized
from ._pg import PG_ERRORS, bench_database, create_database, drop_database, new_schema, server_shown
from ._table import QUICK, figure

__all__ = ["pg_main"]

SEQUENTIAL_JOBS = sized(40, 4)
CONCURRENT = sized(10, 2)
CONCURRENT_ROUNDS = sized(4, 1)
#: the workers' lease in the worker-death case (AURA_LEASE_SECONDS)
LEASE_SECONDS = 2.0 if QUICK else 5.0
REQUEST = JobRequest(options=Options(quality="draft"))
TARGET = 5.0
_FAILURES = (*PG_ERRORS, StoreError)


class DbosRun(Protocol):
    def overhead(self, jobs: int, at_once: int) -> float: ...

    def close(self) -> None: ...


#: reports ours against DBOS (seconds): label, ours, theirs, target (None: info)
Report = Callable[[str, float, float, float | None], None]


# ---- (a) per-step overhead -------------------------------------------------------------------


async def _ended(log: EventStore, after_seq: int, count: int) -> None:
    """Return once `count` jobs succeeded after `after_seq`; a job that failed raises."""
    ended = 0
    async with contextlib.aclosing(log.subscribe(after_seq)) as records:
        async for rec in records:
            if isinstance(rec.event, JobFailed | JobCanceled):
                raise RuntimeError(f"job {rec.job_id} ended {type(rec.event).__name__}")
            if isinstance(rec.event, JobSucceeded):
                ended += 1
                if ended == count:
                    return


async def _aura_overhead(
    database_url: str, data_dir: Path, pipeline: Mapping[str, Step], jobs: int, at_once: int
) -> float:
    """Seconds per step: `jobs` five-step jobs, `at_once` submitted together, each round
    waited for to its last JobSucceeded."""
    url = await new_schema(database_url, data_dir.name.replace("-", "_"))
    settings = Settings(data_dir=data_dir, database_url=url, max_concurrent_jobs=at_once)
    engine = await Engine.open(settings, pipeline=pipeline)
    try:
        started = time.perf_counter()
        for _ in range(jobs // at_once):
            done = asyncio.create_task(_ended(engine.log, engine.log.last_seq, at_once))
            await asyncio.gather(*(engine.submit(REQUEST) for _ in range(at_once)))
            await done
        elapsed = time.perf_counter() - started
    finally:
        await engine.close()
    return elapsed / (jobs * len(STEP_NAMES))


def _overheads(
    dbos_on: Callable[[str], DbosRun], pipeline: Mapping[str, Step]
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:  # DBOS runs outside any event loop: no async with
        aura_db = _database(stack, "aura_bench_orch")
        dbos = dbos_on(_database(stack, "aura_bench_dbos"))
        stack.callback(dbos.close)
        jobs = CONCURRENT * CONCURRENT_ROUNDS
        for i in range(REPEATS):  # interleaved, so both see the same machine
            seq = _aura_overhead(
                aura_db, fresh_dir(f"orch-pg-seq-{i}"), pipeline, SEQUENTIAL_JOBS, 1
            )
            results.setdefault("aura_seq", []).append(asyncio.run(seq))
            results.setdefault("dbos_seq", []).append(dbos.overhead(SEQUENTIAL_JOBS, 1))
            par = _aura_overhead(aura_db, fresh_dir(f"orch-pg-par-{i}"), pipeline, jobs, CONCURRENT)
            results.setdefault("aura_par", []).append(asyncio.run(par))
            results.setdefault("dbos_par", []).append(dbos.overhead(jobs, CONCURRENT))
    return results


def _database(stack: contextlib.ExitStack, prefix: str) -> str:
    """A new database on the server, dropped when `stack` closes: its URL."""
    name, url = asyncio.run(create_database(prefix))
    stack.callback(lambda: asyncio.run(drop_database(name)))
    return url


# ---- (d) a worker's death ----------------------------------------------------------------------


async def _noop(ctx: StepContext) -> list[Artifact]:
    return []


async def _blocking(ctx: StepContext) -> list[Artifact]:
    print(json.dumps({"reached": time.time()}), flush=True)
    await asyncio.Event().wait()  # until this worker is killed or stopped
    return []


def _worker(database_url: str, data_dir: str, artifacts_dir: str, lease: str) -> None:
    """In a child process: `aura worker`'s loop, the `broll` step blocking."""
    from aura.cli import worker
    from aura.engine import engine

    engine.PIPELINE = {**dict.fromkeys(STEP_NAMES, _noop), "broll": _blocking}  # type: ignore[attr-defined]
    settings = Settings(
        data_dir=Path(data_dir),
        database_url=database_url,
        artifacts_dir=Path(artifacts_dir),
        lease_seconds=float(lease),
    )
    asyncio.run(worker.work(settings))


async def _reached(proc: asyncio.subprocess.Process) -> float:
    """The time (epoch seconds) the worker's blocking step started."""
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        if line.startswith(b"{"):
            reached: float = json.loads(line)["reached"]
            return reached
    raise RuntimeError(f"worker {proc.pid} ended before its step ran")


async def _worker_death(database_url: str, run: int) -> float:
    """Seconds from the SIGKILL of the worker running a job's step to that step running on the
    other worker."""
    url = await new_schema(database_url, f"death_{run}")
    shared = fresh_dir(f"orch-pg-death-{run}")
    root = Path(__file__).parents[1]
    command = [sys.executable, "-m", "bench._orchestration_pg", "worker", url]
    workers = [
        await asyncio.create_subprocess_exec(
            *command,
            str(shared / f"worker-{w}"),
            str(shared / "artifacts"),
            str(LEASE_SECONDS),
            cwd=root,
            stdout=asyncio.subprocess.PIPE,
        )
        for w in range(2)
    ]
    try:
        for proc in workers:  # each says once it is running
            assert proc.stdout is not None
            if b"is running" not in await asyncio.wait_for(proc.stdout.readline(), 60):
                raise RuntimeError(f"worker {proc.pid} did not start")
        api = Settings(data_dir=shared / "api", database_url=url, runs_jobs=False)
        # the API's pipeline names the job's steps (its runner runs none of them)
        async with await Engine.open(api, pipeline=dict.fromkeys(STEP_NAMES, _noop)) as engine:
            await engine.submit(REQUEST)
            steps = {asyncio.create_task(_reached(proc)): proc for proc in workers}
            done, others = await asyncio.wait(steps, timeout=60, return_when="FIRST_COMPLETED")
            if len(done) != 1 or len(others) != 1:
                raise RuntimeError(f"{len(done)} workers ran the job's step at first, not one")
            first = done.pop()
            first.result()  # a worker that ended before the step raises here
            # at a moment of the lease's cycle of its own, as a death comes at any moment
            await asyncio.sleep(random.Random(run).uniform(0, LEASE_SECONDS))
            killed = time.time()
            steps[first].send_signal(signal.SIGKILL)
            resumed = await asyncio.wait_for(others.pop(), LEASE_SECONDS * 3 + 30)
        return resumed - killed
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            await proc.wait()


# ---- report ----------------------------------------------------------------------------------


def pg_main(
    dbos_on: Callable[[str], DbosRun], pipeline: Mapping[str, Step], report: Report
) -> None:
    """The PostgreSQL figures; `dbos_on(url)` launches DBOS on that system database."""
    try:
        results = _overheads(dbos_on, pipeline)
    except _FAILURES as e:
        failure = f"FAILED: no PostgreSQL at {server_shown()}: {type(e).__name__}: {e}"[:120]
        figure("(a) on PostgreSQL, per-step overhead", failure, passed=False)
    else:
        m = {key: median(values) for key, values in results.items()}
        for key, values in results.items():
            print(f"  pg {key}: " + " ".join(f"{v * 1e3:.3f}" for v in values) + " ms", flush=True)
        label = "(a) on PostgreSQL, per-step overhead"
        report(f"{label}, sequential", m["aura_seq"], m["dbos_seq"], TARGET)
        report(f"{label}, {CONCURRENT} jobs at once", m["aura_par"], m["dbos_par"], TARGET)
    _death_figure()


def _death_figure() -> None:
    case = "(d) worker SIGKILLed to its step running on another worker"
    try:
        from aura.cli import worker  # noqa: F401  (`aura worker`, cli/worker.py)
    except ImportError:
        print(f"{case}: not measured (no `aura worker`)", flush=True)
        figure(case, "not measured: no `aura worker`", f"lease {LEASE_SECONDS:g} s")
        return
    try:
        times = asyncio.run(_deaths())
    except _FAILURES as e:
        failure = f"FAILED: no PostgreSQL at {server_shown()}: {type(e).__name__}: {e}"[:120]
        figure(case, failure, passed=False)
        return
    seconds = median(times)
    print(
        f"{case}: {seconds:.2f} s (runs {' '.join(f'{t:.2f}' for t in times)}), "
        f"lease {LEASE_SECONDS:g} s: {seconds / LEASE_SECONDS:.2f}x the lease",
        flush=True,
    )
    figure(case, f"{seconds:.2f} s", f"lease {LEASE_SECONDS:g} s", seconds / LEASE_SECONDS)


async def _deaths() -> list[float]:
    async with bench_database("aura_bench_death") as url:
        return [await _worker_death(url, run) for run in range(REPEATS)]


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        _worker(*sys.argv[2:6])
