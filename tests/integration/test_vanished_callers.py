"""A caller that goes away mid-request (a dropped HTTP client cancels its handler) changes
nothing: what reached the log is followed through, and no job is left stranded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from pathlib import Path
from typing import Any

from runner_support import (
    assert_consistent,
    gate_step,
    is_type,
    pipeline,
    settings_for,
    wait_for,
)

from aura.engine.config.inputs import JobRequest
from aura.engine.engine import Engine
from aura.projections.job import JobStatus


async def call_and_drop_when_logged(
    engine: Engine, call: Callable[[], Coroutine[Any, Any, object]], event_type: str
) -> str:
    """Start `call`, and cancel it the moment its event is committed: the log wakes this
    subscriber before the appender's own continuation runs, so the cancel lands between the
    commit and whatever the caller meant to do next. Returns the event's job id."""
    registered = asyncio.Event()

    async def watch() -> str:
        # From the last event already in the log: once it is yielded, the backlog has been
        # read and the next read waits for live events, so no notification can come late.
        stream = engine.log.subscribe(after_seq=engine.log.last_seq - 1)
        async with aclosing(stream):
            await anext(stream)
            registered.set()
            rec = await anext(stream)
            while rec.type != event_type:
                rec = await anext(stream)
            task.cancel()
            return rec.job_id

    watcher = asyncio.create_task(watch())
    await registered.wait()
    task: asyncio.Task[object] = asyncio.create_task(call())
    async with asyncio.timeout(30):
        job_id = await watcher
        await asyncio.wait({task})
    assert task.cancelled()
    return job_id


async def test_a_submit_whose_caller_went_away_still_runs(tmp_path: Path) -> None:
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        await engine.submit(JobRequest())  # the log is not empty (see the watcher)
        job_id = await call_and_drop_when_logged(
            engine, lambda: engine.submit(JobRequest()), "JobCreated"
        )
        await wait_for(engine.log, job_id, is_type("JobSucceeded"))
        assert (await assert_consistent(engine, job_id)).status is JobStatus.SUCCEEDED


async def test_a_retry_whose_caller_went_away_still_runs(tmp_path: Path) -> None:
    gates: dict[str, asyncio.Event] = {}
    steps = pipeline(broll=gate_step(gates))
    async with await Engine.open(settings_for(tmp_path), pipeline=steps) as engine:
        job = (await engine.submit(JobRequest())).job
        await wait_for(engine.log, job.job_id, is_type("StepStarted", "broll"))
        await engine.cancel(job.job_id)
        gates[job.job_id] = asyncio.Event()
        gates[job.job_id].set()
        await call_and_drop_when_logged(
            engine, lambda: engine.retry(job.job_id), "JobRetryRequested"
        )
        done = await wait_for(engine.log, job.job_id, is_type("JobSucceeded"))
        assert done.event.attempt == 2


async def test_a_cancel_whose_caller_went_away_still_stops_the_step(tmp_path: Path) -> None:
    gates: dict[str, asyncio.Event] = {}
    steps = pipeline(broll=gate_step(gates))
    async with await Engine.open(settings_for(tmp_path), pipeline=steps) as engine:
        job = (await engine.submit(JobRequest())).job
        await wait_for(engine.log, job.job_id, is_type("StepStarted", "broll"))
        await call_and_drop_when_logged(
            engine, lambda: engine.cancel(job.job_id), "JobCancelRequested"
        )
        await wait_for(engine.log, job.job_id, is_type("JobCanceled"))
        state = await assert_consistent(engine, job.job_id)
        assert state.step("broll").status.value == "Canceled"


async def test_cancel_of_a_run_stopped_before_it_began_does_not_hang(tmp_path: Path) -> None:
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        job = (await engine.submit(JobRequest())).job
        run = engine.runner.run_for(job.job_id)
        assert run is not None and run.task is not None
        run.task.cancel()  # as Runner.stop does, before the run's first step
        await asyncio.wait({run.task})
        assert await asyncio.wait_for(run.request_cancel(), 10) is None
