"""How a run ends, decided: the events a step's result, error or timeout means for its job.

The run (aura.engine.run.job_run) executes a step and observes how it ended (a `StepEnd`); these
decide what it appends, as aura.engine.run.decide does for commands. No I/O, no clock. Every failure
names its step and the job's correlation id; a mapped exception has its secrets redacted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from msgspec.structs import replace

from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import map_exception
from aura.engine.errors.taxonomy import make_error
from aura.projections.events import (
    Artifact,
    ErrorInfo,
    Event,
    JobCanceled,
    JobFailed,
    StepCanceled,
    StepFailed,
    StepSucceeded,
)
from aura.projections.job import JobState, StepStatus

__all__ = [
    "StepEnd",
    "decide_probe_timeout",
    "decide_run_failed",
    "decide_step_outcome",
    "map_step_error",
    "step_canceled",
    "step_failed",
    "timeout_error",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepEnd:
    """How a step's run ended, as the run observed it."""

    #: what the step returned
    artifacts: tuple[Artifact, ...] = ()
    #: what it raised (its scope's TimeoutError, a CancelledError of its own); None: it returned
    error: BaseException | None = None
    #: its scope expired at the step's deadline (not at a cancel request or a failed append)
    timed_out: bool = False
    #: seconds it ran
    duration: float = 0.0


def map_step_error(
    exc: BaseException, step: str | None, correlation_id: str, settings: Settings | None = None
) -> ErrorInfo:
    """The taxonomy error for an exception a step raised, with its step and correlation id
    (secrets redacted)."""
    info = map_exception(exc, step=step, correlation_id=correlation_id, settings=settings)
    return replace(info, step=step, correlation_id=correlation_id)


def timeout_error(step: str, limit: float | None, message: str) -> ErrorInfo:
    """`StepTimeout:{step}`: the step (or the probe after it) ran past `limit` seconds."""
    return make_error(f"StepTimeout:{step}", message, details={"limitSeconds": limit})


def step_failed(state: JobState, step: str, error: ErrorInfo) -> list[Event]:
    """`step` failed with `error`, and so did the job."""
    attempt = state.attempt
    error = replace(error, step=step, correlation_id=state.correlation_id, attempt=attempt)
    return [
        StepFailed(step=step, attempt=attempt, error=error),
        JobFailed(error=error, attempt=attempt),
    ]


def step_canceled(state: JobState, step: str) -> list[Event]:
    """A cancel request stopped `step`, and so the job."""
    attempt = state.attempt
    return [StepCanceled(step=step, attempt=attempt), JobCanceled(attempt=attempt)]


def decide_step_outcome(
    state: JobState,
    step: str,
    end: StepEnd,
    *,
    limit: float | None,
    settings: Settings | None = None,
) -> list[Event]:
    """`[StepSucceeded]` when the step returned; else the job's terminal events.

    A timeout fails the step (`StepTimeout:{step}`, `limit`: its limit in seconds) even when a
    cancel was requested meanwhile; any other error under a cancel request cancels it; a step
    that cancelled itself is a bug (`Internal`); the rest map to their taxonomy code.
    """
    if end.timed_out:
        message = f"step {step} ran past its limit of {limit:g} s and was stopped"
        return step_failed(state, step, timeout_error(step, limit, message))
    if state.cancel_requested and end.error is not None:
        return step_canceled(state, step)
    if isinstance(end.error, asyncio.CancelledError):
        return step_failed(state, step, make_error("Internal", f"step {step} stopped on its own"))
    if end.error is not None:
        error = map_step_error(end.error, step, state.correlation_id, settings)
        return step_failed(state, step, error)
    duration = round(end.duration, 3)
    return [
        StepSucceeded(
            step=step, attempt=state.attempt, artifacts=end.artifacts, duration_seconds=duration
        )
    ]


def decide_probe_timeout(state: JobState, limit: float, *, canceled: bool) -> list[Event]:
    """The finished video's probe was stopped: `JobCanceled` when a cancel request stopped it,
    else `JobFailed` with the last step's StepTimeout (no step failed, so no StepFailed)."""
    if canceled:
        return [JobCanceled(attempt=state.attempt)]
    last = state.steps[-1].name
    message = f"probing the finished video took longer than {limit:g} s"
    error = replace(
        timeout_error(last, limit, message),
        step=last,
        correlation_id=state.correlation_id,
        attempt=state.attempt,
    )
    return [JobFailed(error=error, attempt=state.attempt)]


def decide_run_failed(
    state: JobState, exc: BaseException, settings: Settings | None = None
) -> list[Event]:
    """A run that failed outside its steps (a bug, a store failure): `StepFailed` for each step
    the log shows running, then `JobFailed`, with `exc`'s error. Nothing when the job ended."""
    if state.is_terminal:
        return []
    attempt = state.attempt
    error = replace(map_step_error(exc, None, state.correlation_id, settings), attempt=attempt)
    failed: list[Event] = [
        StepFailed(step=step.name, attempt=attempt, error=replace(error, step=step.name))
        for step in state.steps
        if step.status is StepStatus.RUNNING
    ]
    return [*failed, JobFailed(error=error, attempt=attempt)]
