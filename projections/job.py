"""Job state as a pure fold over the job's recorded events. No I/O, no clock, no logging."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import assert_never

import msgspec
from msgspec.structs import replace

from aura.projections.events import (
    ErrorInfo,
    JobCanceled,
    JobCancelRequested,
    JobCreated,
    JobFailed,
    JobInterrupted,
    JobRetryRequested,
    JobStarted,
    JobSucceeded,
    JobWarning,
    Output,
    OutputsPruned,
    Recorded,
    StepCanceled,
    StepFailed,
    StepProgressed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from aura.projections.status import (
    ACTIVE_JOB_STATUSES,
    DONE_STEP_STATUSES,
    JOB_STATUS_AFTER,
    RETRYABLE_JOB_STATUSES,
    STEP_STATUS_AFTER,
    TERMINAL_JOB_STATUSES,
    JobStatus,
    StepStatus,
)

# JobStatus, StepStatus and TERMINAL_JOB_STATUSES are defined in projections.status and
# exported here too, beside the state that holds them.
__all__ = [
    "TERMINAL_JOB_STATUSES",
    "InvalidTransition",
    "JobState",
    "JobStatus",
    "StepState",
    "StepStatus",
    "WarningState",
    "apply",
    "fold",
]


class InvalidTransition(Exception):
    """An event that cannot follow the job's current state (a corrupt or foreign log)."""

    def __init__(self, seq: int, job_id: str, message: str) -> None:
        super().__init__(f"seq {seq} (job {job_id}): {message}")
        self.seq = seq


class State(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of the projection structs (camelCase on the wire)."""


class StepState(State, frozen=True, kw_only=True):
    name: str
    status: StepStatus = StepStatus.PENDING
    progress_pct: float = 0.0
    eta_seconds: float | None = None
    attempt: int = 0
    started_utc: datetime | None = None
    ended_utc: datetime | None = None


class WarningState(State, frozen=True, kw_only=True):
    code: str
    message: str
    step: str | None = None
    attempt: int = 1


class JobState(State, frozen=True, kw_only=True):
    job_id: str
    preset: str
    status: JobStatus
    attempt: int
    steps: tuple[StepState, ...]
    output: Output | None = None
    warnings: tuple[WarningState, ...] = ()
    #: every attempt's failures in the order recorded, each with its `attempt`, each once
    errors: tuple[ErrorInfo, ...] = ()
    created_utc: datetime
    started_utc: datetime | None = None
    ended_utc: datetime | None = None
    correlation_id: str = ""
    cancel_requested: bool = False
    #: when `aura compact --prune-outputs` deleted the job's files (output and artifacts);
    #: None while they are kept, and again once a retry makes new ones
    output_pruned_utc: datetime | None = None
    #: the job's version (events applied) and the seq of the last one
    version: int = 0
    last_seq: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    def step(self, name: str) -> StepState:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


def _step_of(state: JobState, name: str, rec: Recorded) -> StepState:
    for step in state.steps:
        if step.name == name:
            return step
    raise InvalidTransition(rec.seq, rec.job_id, f"unknown step {name!r}")


def _held_progress(step: StepState, attempt: int) -> float:
    """Where a starting step's bar begins: 0 in a new attempt; where it was when the step
    starts again in the same attempt (resumed after a restart), so no bar goes back."""
    return step.progress_pct if step.attempt == attempt else 0.0


def _with_step(
    state: JobState, name: str, rec: Recorded, at_least: float | None = None, **changes: object
) -> JobState:
    """The state with step `name` changed; `at_least`: its progress, unless it got further."""
    steps = list(state.steps)
    for i, step in enumerate(steps):
        if step.name == name:
            if at_least is not None:
                changes["progress_pct"] = max(step.progress_pct, at_least)
            steps[i] = replace(step, **changes)
            return replace(state, steps=tuple(steps), version=rec.version, last_seq=rec.seq)
    raise InvalidTransition(rec.seq, rec.job_id, f"unknown step {name!r}")


def _require(state: JobState, rec: Recorded, allowed: frozenset[JobStatus]) -> None:
    if state.status not in allowed:
        raise InvalidTransition(
            rec.seq, rec.job_id, f"{rec.type} while the job is {state.status.value}"
        )


_RUNNING = frozenset({JobStatus.RUNNING})


def _created(rec: Recorded, event: JobCreated) -> JobState:
    return JobState(
        job_id=rec.job_id,
        preset=event.preset,
        status=JOB_STATUS_AFTER[JobCreated],
        attempt=event.attempt,
        steps=tuple(StepState(name=name) for name in event.steps),
        created_utc=rec.ts,
        correlation_id=event.correlation_id,
        version=rec.version,
        last_seq=rec.seq,
    )


def _retried(state: JobState, rec: Recorded, event: JobRetryRequested) -> JobState:
    # Steps that are done keep their status until the new attempt skips or reruns them;
    # the rest wait again.
    steps = tuple(
        s
        if s.status in DONE_STEP_STATUSES
        else replace(s, status=StepStatus.PENDING, progress_pct=0.0, eta_seconds=None)
        for s in state.steps
    )
    return replace(
        state,
        status=JOB_STATUS_AFTER[JobRetryRequested],
        attempt=event.attempt,
        steps=steps,
        output=None,
        ended_utc=None,
        cancel_requested=False,
        output_pruned_utc=None,
        version=rec.version,
        last_seq=rec.seq,
    )


def _of_attempt(error: ErrorInfo, attempt: int) -> ErrorInfo:
    """`error` as the job lists it: with the attempt of the event that recorded it (a log
    written before errors carried their attempt left it out)."""
    return error if error.attempt == attempt else replace(error, attempt=attempt)


def _same_failure(listed: ErrorInfo, error: ErrorInfo) -> bool:
    """Whether a JobFailed's `error` is the failure already `listed` from its StepFailed: the
    same error in the same attempt, the JobFailed's naming the same step or none (a run that
    failed outside its step records the step's error with the step and the job's without).
    The job lists it once, as its StepFailed recorded it, with the step."""
    if listed.attempt != error.attempt or error.step not in (None, listed.step):
        return False
    return replace(listed, step=None) == replace(error, step=None)


def _ended(state: JobState, rec: Recorded, status: JobStatus, **changes: object) -> JobState:
    return replace(
        state, status=status, ended_utc=rec.ts, version=rec.version, last_seq=rec.seq, **changes
    )


def apply(state: JobState | None, rec: Recorded) -> JobState:  # noqa: C901 - one case per type
    """The job's state after `rec`. Raises InvalidTransition for an impossible event."""
    event = rec.event
    if state is None:
        if not isinstance(event, JobCreated):
            raise InvalidTransition(rec.seq, rec.job_id, f"{rec.type} before JobCreated")
        return _created(rec, event)
    if rec.version != state.version + 1:
        raise InvalidTransition(
            rec.seq, rec.job_id, f"version {rec.version} follows version {state.version}"
        )
    match event:
        # Progress first: most of a log is StepProgressed, and each case tried before the one
        # that matches costs an isinstance (the classes are disjoint, so order is free).
        case StepProgressed(step=name):
            _require(state, rec, _RUNNING)
            # the furthest the step got in this attempt: a step resumed after a restart runs
            # again from its start, and its bar holds until the new run passes it
            return _with_step(state, name, rec, at_least=event.pct, eta_seconds=event.eta_seconds)
        case JobCreated():
            raise InvalidTransition(rec.seq, rec.job_id, "JobCreated twice")
        case JobStarted():
            _require(state, rec, ACTIVE_JOB_STATUSES)
            started = state.started_utc or rec.ts
            return replace(
                state,
                status=JOB_STATUS_AFTER[JobStarted],
                started_utc=started,
                version=rec.version,
                last_seq=rec.seq,
            )
        case StepStarted(step=name):
            _require(state, rec, _RUNNING)
            return _with_step(
                state,
                name,
                rec,
                status=STEP_STATUS_AFTER[StepStarted],
                progress_pct=_held_progress(_step_of(state, name, rec), event.attempt),
                eta_seconds=None,
                attempt=event.attempt,
                started_utc=rec.ts,
                ended_utc=None,
            )
        case StepSucceeded(step=name):
            _require(state, rec, _RUNNING)
            return _with_step(
                state,
                name,
                rec,
                status=STEP_STATUS_AFTER[StepSucceeded],
                progress_pct=100.0,
                eta_seconds=None,
                ended_utc=rec.ts,
            )
        case StepSkipped(step=name):
            _require(state, rec, _RUNNING)
            return _with_step(
                state,
                name,
                rec,
                status=STEP_STATUS_AFTER[StepSkipped],
                progress_pct=100.0,
                eta_seconds=None,
                attempt=event.attempt,
            )
        case StepFailed(step=name):
            _require(state, rec, _RUNNING)
            state = replace(state, errors=(*state.errors, _of_attempt(event.error, event.attempt)))
            step_status = STEP_STATUS_AFTER[StepFailed]
            return _with_step(
                state, name, rec, status=step_status, eta_seconds=None, ended_utc=rec.ts
            )
        case StepCanceled(step=name):
            _require(state, rec, ACTIVE_JOB_STATUSES)
            step_status = STEP_STATUS_AFTER[StepCanceled]
            return _with_step(
                state, name, rec, status=step_status, eta_seconds=None, ended_utc=rec.ts
            )
        case JobWarning():
            warning = WarningState(
                code=event.code, message=event.message, step=event.step, attempt=event.attempt
            )
            # A job resumed after a crash runs preflight again in the same attempt: the same
            # warning, recorded again, is listed once.
            warnings = state.warnings if warning in state.warnings else (*state.warnings, warning)
            return replace(state, warnings=warnings, version=rec.version, last_seq=rec.seq)
        case JobCancelRequested():
            _require(state, rec, ACTIVE_JOB_STATUSES)
            return replace(state, cancel_requested=True, version=rec.version, last_seq=rec.seq)
        case JobCanceled():
            _require(state, rec, ACTIVE_JOB_STATUSES)
            return _ended(state, rec, JOB_STATUS_AFTER[JobCanceled])
        case JobRetryRequested():
            _require(state, rec, RETRYABLE_JOB_STATUSES)
            return _retried(state, rec, event)
        case JobInterrupted():
            # Found running after a restart: it waits for a runner again, and the step that
            # was running when the engine died counts as not started (its progress held).
            _require(state, rec, ACTIVE_JOB_STATUSES)
            steps = tuple(
                replace(s, status=StepStatus.PENDING, eta_seconds=None)
                if s.status is StepStatus.RUNNING
                else s
                for s in state.steps
            )
            queued = JOB_STATUS_AFTER[JobInterrupted]
            return replace(state, status=queued, steps=steps, version=rec.version, last_seq=rec.seq)
        case JobSucceeded():
            _require(state, rec, _RUNNING)
            return _ended(state, rec, JOB_STATUS_AFTER[JobSucceeded], output=event.output)
        case JobFailed():
            _require(state, rec, ACTIVE_JOB_STATUSES)
            error = _of_attempt(event.error, event.attempt)
            listed = any(_same_failure(e, error) for e in state.errors)
            errors = state.errors if listed else (*state.errors, error)
            return _ended(state, rec, JOB_STATUS_AFTER[JobFailed], errors=errors)
        case OutputsPruned():
            _require(state, rec, TERMINAL_JOB_STATUSES)
            return replace(state, output_pruned_utc=rec.ts, version=rec.version, last_seq=rec.seq)
        case _:
            assert_never(event)


def fold(records: Iterable[Recorded], state: JobState | None = None) -> JobState | None:
    """Apply every record in order, starting from `state` (None: before JobCreated)."""
    for rec in records:
        state = apply(state, rec)
    return state
