"""Small real pipelines and log helpers for the runner, cancel/retry and recovery tests.

The steps here are real: they write files atomically, run real `sleep` processes through the
engine's process helper (own process group, parent-death signal) and fail with real errors.
They use the pipeline's step names, because options.timeouts only accepts those.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from aura.engine.config.inputs import STEP_NAMES
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import AuraError
from aura.engine.files.atomic import TEMP_MARKER, write_bytes
from aura.engine.run.context import Step, StepContext
from aura.engine.tools.process import run_process
from aura.projections.events import Artifact, Recorded
from aura.projections.job import JobState, fold
from aura.projections.job_list import JobRow
from aura.store.log import EventLog

__all__ = [
    "TIMEOUT",
    "assert_consistent",
    "child_pids",
    "file_step",
    "gate_step",
    "noop",
    "pipeline",
    "settings_for",
    "sleep_step",
    "temp_files",
    "types_of",
    "until",
    "wait_for",
    "wait_gone",
]

#: generous limit for anything the tests wait on (CI machines are slow and shared)
TIMEOUT = 60.0


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "kill_grace_seconds": 2.0}
    values.update(overrides)
    return Settings(**values)


async def noop(ctx: StepContext) -> list[Artifact]:
    return []


def file_step(content: bytes | None = None) -> Step:
    """Writes `<step>.out` atomically (content defaults to the step's name) and returns it."""

    async def step(ctx: StepContext) -> list[Artifact]:
        data = content if content is not None else f"output of {ctx.step}\n".encode()
        path = ctx.work_dir / f"{ctx.step}.out"
        await asyncio.to_thread(write_bytes, path, data)
        digest = hashlib.sha256(data).hexdigest()
        return [Artifact(name=ctx.step, path=str(path), size_bytes=len(data), sha256=digest)]

    return step


def sleep_step(seconds: float = 60.0, *, then: Step | None = None) -> Step:
    """Runs a real `sleep` child through the engine's process helper, then `then` (if any).

    It also leaves a temp file in the work folder while it runs, as a writer would.
    """

    async def step(ctx: StepContext) -> list[Artifact]:
        temp = ctx.work_dir / f".{ctx.step}{TEMP_MARKER}test.mp4"
        temp.write_bytes(b"partial")
        try:
            await run_process(["sleep", str(seconds)], ctx.settings)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return [] if then is None else await then(ctx)

    return step


def gate_step(gates: dict[str, asyncio.Event], then: Step | None = None) -> Step:
    """Waits until the test sets `gates[job_id]`."""

    async def step(ctx: StepContext) -> list[Artifact]:
        await gates.setdefault(ctx.job_id, asyncio.Event()).wait()
        return [] if then is None else await then(ctx)

    return step


def failing_step(code: str = "FFmpegFailedExitCode:1") -> Step:
    async def step(ctx: StepContext) -> list[Artifact]:
        raise AuraError.of(code, "the test step failed on purpose")

    return step


def pipeline(**steps: Step) -> dict[str, Step]:
    """The five pipeline steps: `file_step()` unless given (preflight: `noop`)."""
    chosen: dict[str, Step] = {}
    for name in STEP_NAMES:
        default = noop if name == "preflight" else file_step()
        chosen[name] = steps.get(name, default)
    return chosen


async def wait_for(
    log: EventLog,
    job_id: str,
    predicate: Callable[[Recorded], bool],
    *,
    after_seq: int = 0,
    limit: float = TIMEOUT,
) -> Recorded:
    """The first record of the job (after `after_seq`) matching `predicate`, pushed by the log."""
    async with asyncio.timeout(limit):
        async for rec in log.subscribe(after_seq=after_seq, job_id=job_id):
            if predicate(rec):
                return rec
    raise AssertionError(f"the log closed before job {job_id} matched")


def is_type(name: str, step: str | None = None) -> Callable[[Recorded], bool]:
    def match(rec: Recorded) -> bool:
        return rec.type == name and (step is None or rec.event.step_name == step)

    return match


def types_of(records: list[Recorded], attempt: int | None = None) -> list[str]:
    """`Type` or `Type:step` for each record (of one attempt, if given)."""
    return [
        rec.type + (f":{rec.event.step_name}" if rec.event.step_name else "")
        for rec in records
        if attempt is None or rec.event.attempt == attempt
    ]


async def assert_consistent(engine: Engine, job_id: str) -> JobState:
    """Versions are contiguous, and the job-list row equals the row of a full replay."""
    records = await engine.log.read(job_id)
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    state = fold(records)
    assert state is not None
    assert state == await engine.get(job_id)
    rows = {row.job_id: row for row in await engine.list_jobs(limit=10_000)}
    assert rows[job_id] == JobRow.of(state)
    return state


async def until(predicate: Callable[[], object], limit: float = TIMEOUT) -> None:
    """Wait for a condition no event announces (a child process, a file), checking often."""
    async with asyncio.timeout(limit):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


def child_pids(name: str, parent: int | None = None) -> list[int]:
    """Pids of descendants of `parent` (default: this process) whose name is `name`."""
    proc = psutil.Process(parent)
    return [p.pid for p in proc.children(recursive=True) if _name(p) == name]


def _name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.Error:
        return ""


def wait_gone(pids: list[int], timeout: float = TIMEOUT) -> list[int]:
    """Wait until every pid has exited (zombies count as gone); returns those still alive."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if _alive(p)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP_MARKER in p.name]


def steps_of(pipeline_: Mapping[str, Step]) -> tuple[str, ...]:
    return tuple(pipeline_)
