"""Pure decisions: what submit, cancel, retry and a restart mean for a job, and what an attempt
reuses. No I/O, no clock: the engine and the runner read, call these, then append.

Reuse rule (retry and resume): a step is skipped with `StepSkipped` ("reused from attempt N")
when an earlier run of it succeeded with at least one artifact, every artifact still has its
recorded size and sha256 (checked by the runner), and no step before it produced different
artifacts in this attempt. A step with no artifacts (preflight) has nothing to verify, so it runs
again in every attempt. Starting a step forgets its earlier success: its outputs may have been
rewritten since.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from aura.engine.config.inputs import JobRequest, convert_request
from aura.engine.errors.taxonomy import Conflict, make_error
from aura.projections.events import (
    Artifact,
    Event,
    JobCanceled,
    JobCancelRequested,
    JobCreated,
    JobFailed,
    JobInterrupted,
    JobRetryRequested,
    Recorded,
    StepCanceled,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobState, JobStatus, StepStatus, fold
from aura.projections.status import DONE_STEP_STATUSES, RETRYABLE_JOB_STATUSES

__all__ = [
    "PROGRESS_MIN_INTERVAL",
    "PROGRESS_MIN_STEP",
    "Reuse",
    "artifacts_changed",
    "check_events",
    "created_event",
    "decide_cancel",
    "decide_recovery",
    "decide_retry",
    "decide_reuse",
    "is_duplicate",
    "job_id_for_key",
    "new_job_id",
    "request_of",
    "reuse_candidates",
    "should_emit_progress",
]

#: seconds between two StepProgressed events of a step, at least
PROGRESS_MIN_INTERVAL = 0.25
#: percentage points progress must rise by before it is recorded again
PROGRESS_MIN_STEP = 1.0

#: idempotency keys map to job ids in this namespace, so a key names one job forever
_KEY_NAMESPACE = uuid.UUID("6f1c9a52-4a8e-4c1e-9d55-0b6a2f0c7e31")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---- submit ---------------------------------------------------------------------------------


def new_job_id() -> str:
    return uuid.uuid4().hex


def job_id_for_key(idempotency_key: str) -> str:
    """The job id an idempotency key stands for: appending JobCreated at version 0 is the lock."""
    return uuid.uuid5(_KEY_NAMESPACE, idempotency_key).hex


def _builtins(value: object) -> Any:
    return msgspec.to_builtins(value)


def created_event(
    request: JobRequest,
    steps: Sequence[str],
    *,
    correlation_id: str,
    idempotency_key: str | None = None,
    rerun_of: str | None = None,
) -> JobCreated:
    """The JobCreated of a new job; brief and options are stored with every default filled in."""
    return JobCreated(
        preset=request.preset,
        brief={} if request.brief is None else _builtins(request.brief),
        options=_builtins(request.options),
        steps=tuple(steps),
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        rerun_of=rerun_of,
    )


def request_of(created: JobCreated) -> JobRequest:
    """The request a job was created from (for rerun and for the steps' inputs)."""
    data: dict[str, Any] = {"preset": created.preset, "options": created.options}
    if created.brief:
        data["brief"] = created.brief
    return convert_request(data)


def is_duplicate(existing: JobCreated, request: JobRequest, idempotency_key: str) -> bool:
    """True when `request` repeats the job created under the same key; Conflict if it differs."""
    if request_of(existing) == request:
        return True
    raise Conflict(
        job_id_for_key(idempotency_key),
        f"the idempotency key {idempotency_key!r} was already used for a different request",
        remediation="Send a new Idempotency-Key with a new request; the same key with the "
        "same body returns the job it created.",
    )


# ---- cancel, retry, restart -----------------------------------------------------------------


def decide_cancel(state: JobState, *, owned: bool) -> list[Event]:
    """What a cancel request appends.

    `owned`: a runner in this engine holds the job (loaded to start it, or running it). It is
    only told: `JobCancelRequested`, and the runner stops the step and appends `StepCanceled`
    and `JobCanceled` (or just `JobCanceled` between steps). Not owned, a Queued job is canceled
    at once; so is a Running one (another process's, or found so with recovery off): its
    running step gets `StepCanceled`, and a stale runner elsewhere fails its next append.
    Remaining steps stay Pending. A cancel already requested appends nothing more to an owned
    job. Terminal: Conflict.
    """
    if state.is_terminal:
        raise Conflict(state.job_id, f"it is already {state.status.value}; nothing to cancel")
    attempt = state.attempt
    requested: list[Event] = [] if state.cancel_requested else [JobCancelRequested(attempt=attempt)]
    if owned:
        return requested
    running = [
        StepCanceled(step=s.name, attempt=attempt)
        for s in state.steps
        if s.status is StepStatus.RUNNING
    ]
    return [*requested, *running, JobCanceled(attempt=attempt)]


def decide_retry(state: JobState) -> list[Event]:
    """A new attempt of a Failed or Canceled job, from its first step not done."""
    if state.status not in RETRYABLE_JOB_STATUSES:
        raise Conflict(
            state.job_id,
            f"it is {state.status.value}; only a Failed or Canceled job can be retried",
        )
    from_step = next((s.name for s in state.steps if s.status not in DONE_STEP_STATUSES), None)
    return [JobRetryRequested(attempt=state.attempt + 1, from_step=from_step)]


def decide_recovery(
    state: JobState, on_interrupted: Literal["resume", "fail"], *, correlation_id: str = ""
) -> list[Event]:
    """What start-up appends for a job the log shows as active.

    Running: `JobInterrupted` (its running step goes back to Pending), then, with
    on_interrupted="fail", `JobFailed(Interrupted)`. A cancel requested before the crash ends
    as a cancel does: the step that was running `StepCanceled`, then `JobCanceled`. Queued:
    nothing (it is queued again).
    """
    attempt = state.attempt
    events: list[Event] = []
    if state.status is JobStatus.RUNNING:
        step = next((s.name for s in state.steps if s.status is StepStatus.RUNNING), None)
        events.append(JobInterrupted(step=step, attempt=attempt))
        if state.cancel_requested:
            if step is not None:
                events.append(StepCanceled(step=step, attempt=attempt))
            return [*events, JobCanceled(attempt=attempt)]
        if on_interrupted == "fail":
            error = make_error(
                "Interrupted",
                "the engine stopped while the job was running"
                + (f" (step {step})" if step else ""),
                step=step,
                correlation_id=correlation_id or state.correlation_id,
                attempt=attempt,
            )
            events.append(JobFailed(error=error, attempt=attempt))
        return events
    if state.status is JobStatus.QUEUED and state.cancel_requested:
        return [JobCanceled(attempt=attempt)]
    return events


# ---- reuse ----------------------------------------------------------------------------------


class Reuse(msgspec.Struct, frozen=True, kw_only=True):
    """A step's last success: the attempt it ran in and the artifacts to verify."""

    attempt: int
    artifacts: tuple[Artifact, ...]


def reuse_candidates(records: Iterable[Recorded]) -> dict[str, Reuse]:
    """Each step's last success with artifacts, unless the step was started again since."""
    found: dict[str, Reuse] = {}
    for rec in records:
        event = rec.event
        if isinstance(event, StepSucceeded):
            if event.artifacts:
                found[event.step] = Reuse(attempt=event.attempt, artifacts=event.artifacts)
            else:
                found.pop(event.step, None)
        elif isinstance(event, StepStarted):
            found.pop(event.step, None)
    return found


def decide_reuse(
    step: str,
    candidate: Reuse | None,
    *,
    verified: bool,
    upstream_changed: bool,
    attempt: int,
) -> StepSkipped | None:
    """`StepSkipped` when the step's earlier result stands, None when the step must run."""
    if candidate is None or not verified or upstream_changed:
        return None
    return StepSkipped(
        step=step,
        attempt=attempt,
        reason=f"reused from attempt {candidate.attempt}",
        reused_from_attempt=candidate.attempt,
    )


def artifacts_changed(before: Reuse | None, after: Sequence[Artifact]) -> bool:
    """Did a step that ran produce something later steps have not seen? (by name and sha256)"""
    if not after:
        return False
    if before is None:
        return True
    return _digests(before.artifacts) != _digests(after)


def _digests(artifacts: Iterable[Artifact]) -> Mapping[str, str]:
    return {a.name: a.sha256 for a in artifacts}


# ---- progress and validity ------------------------------------------------------------------


def should_emit_progress(
    last_pct: float, last_time: float, pct: float, now: float, message_changed: bool
) -> bool:
    """Throttle: record progress at most every PROGRESS_MIN_INTERVAL s, and only when it rose
    by PROGRESS_MIN_STEP points (or the message changed). 100 % is left to StepSucceeded."""
    if pct >= 100.0 or now - last_time < PROGRESS_MIN_INTERVAL:
        return False
    return pct - last_pct >= PROGRESS_MIN_STEP or (message_changed and pct >= last_pct)


def check_events(state: JobState, events: Sequence[Event]) -> JobState:
    """The state after `events`, raising InvalidTransition before anything invalid is appended."""
    # The time is irrelevant to validity; the store stamps the real one.
    records = [
        Recorded(state.last_seq + i + 1, state.job_id, state.version + i + 1, _EPOCH, e)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]
    result = fold(records, state)
    assert result is not None
    return result
