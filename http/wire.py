"""The JSON shapes the HTTP API answers, and the mapping of log events to SSE messages.

The public job shape is built field by field from `JobState`, so the projection's internal
fields (cancel flag, version) never leak into a response; its correlation id and last seq are
shown (a page resumes the job's stream after `lastSeq`). Timestamps are ISO 8601 UTC with
microseconds and a `Z`, like the log's `ts` column.
"""

from __future__ import annotations

from typing import Any

import msgspec

from aura.projections.events import (
    ErrorInfo,
    Event,
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
    Recorded,
    StepCanceled,
    StepFailed,
    StepProgressed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobState, JobStatus, StepStatus
from aura.projections.job_list import JobRow
from aura.projections.status import JOB_STATUS_AFTER, STEP_STATUS_AFTER
from aura.store.rows import format_optional_ts, format_ts

__all__ = [
    "ENCODER",
    "TERMINAL_EVENT_TYPES",
    "WIRE_NAMES",
    "JobChanged",
    "JobList",
    "JobSummary",
    "JobView",
    "LogLine",
    "StepView",
    "WarningView",
    "event_data",
    "job_list",
    "job_summary",
    "job_view",
    "log_line",
]

ENCODER = msgspec.json.Encoder()

#: log type name -> SSE event name (the seed's names are the wire's)
WIRE_NAMES: dict[str, str] = {
    "StepProgressed": "step-progress",
    "StepStarted": "step-status",
    "StepSucceeded": "step-status",
    "StepSkipped": "step-status",
    "StepCanceled": "step-status",
    "StepFailed": "step-error",
    "JobCreated": "job-status",
    "JobStarted": "job-status",
    "JobRetryRequested": "job-status",
    "JobInterrupted": "job-status",
    "JobCancelRequested": "job-status",
    "JobSucceeded": "job-completed",
    "JobFailed": "job-failed",
    "JobWarning": "job-warning",
    "JobCanceled": "job-canceled",
}

#: events that end a job's attempt: a stream ends after one unless a retry follows it
TERMINAL_EVENT_TYPES: tuple[type, ...] = (JobSucceeded, JobFailed, JobCanceled)

#: job-status's `status` for a cancel request: the job is still active until JobCanceled
CANCELING = "Canceling"


class Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of response shapes (camelCase)."""


class StepView(Wire, frozen=True, kw_only=True):
    name: str
    status: StepStatus
    progress_pct: float
    eta_seconds: float | None
    attempt: int
    started_utc: str | None
    ended_utc: str | None


class WarningView(Wire, frozen=True, kw_only=True):
    code: str
    message: str
    step: str | None
    attempt: int


class JobView(Wire, frozen=True, kw_only=True):
    """A job as `GET /api/jobs/{id}` and the action endpoints answer it."""

    job_id: str
    preset: str
    status: JobStatus
    attempt: int
    steps: tuple[StepView, ...]
    output: Output | None
    warnings: tuple[WarningView, ...]
    errors: tuple[ErrorInfo, ...]
    created_utc: str
    started_utc: str | None
    ended_utc: str | None
    correlation_id: str
    #: the seq of the last event folded into this view
    last_seq: int
    #: seconds until the job is done (see projections.eta); null when unknown, when the job is
    #: not Queued or Running, and in a view of a past seq
    eta_seconds: float | None


class JobSummary(Wire, frozen=True, kw_only=True):
    """One row of `GET /api/jobs` (from the read model)."""

    job_id: str
    preset: str
    status: JobStatus
    attempt: int
    created_utc: str
    started_utc: str | None
    ended_utc: str | None


class JobList(Wire, frozen=True, kw_only=True):
    jobs: tuple[JobSummary, ...]
    limit: int
    offset: int
    #: the offset of the next page, or null on the last page
    next_offset: int | None
    #: the log's seq the rows are consistent with: GET /api/events resumes after it
    last_seq: int


class JobChanged(Wire, frozen=True, kw_only=True):
    """The data of a `job-changed` message of `GET /api/events`: the job's row right after the
    event `seq`."""

    seq: int
    job: JobSummary


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One NDJSON line of `GET /api/jobs/{id}/log`: a raw event with its envelope."""

    seq: int
    version: int
    type: str
    step: str | None
    attempt: int
    ts: str
    data: msgspec.Raw


def job_view(state: JobState, eta_seconds: float | None = None) -> JobView:
    return JobView(
        job_id=state.job_id,
        preset=state.preset,
        status=state.status,
        attempt=state.attempt,
        steps=tuple(
            StepView(
                name=s.name,
                status=s.status,
                progress_pct=s.progress_pct,
                eta_seconds=s.eta_seconds,
                attempt=s.attempt,
                started_utc=format_optional_ts(s.started_utc),
                ended_utc=format_optional_ts(s.ended_utc),
            )
            for s in state.steps
        ),
        output=state.output,
        warnings=tuple(
            WarningView(code=w.code, message=w.message, step=w.step, attempt=w.attempt)
            for w in state.warnings
        ),
        errors=state.errors,
        created_utc=format_ts(state.created_utc),
        started_utc=format_optional_ts(state.started_utc),
        ended_utc=format_optional_ts(state.ended_utc),
        correlation_id=state.correlation_id,
        last_seq=state.last_seq,
        eta_seconds=eta_seconds,
    )


def job_summary(row: JobRow) -> JobSummary:
    return JobSummary(
        job_id=row.job_id,
        preset=row.preset,
        status=row.status,
        attempt=row.attempt,
        created_utc=format_ts(row.created_utc),
        started_utc=format_optional_ts(row.started_utc),
        ended_utc=format_optional_ts(row.ended_utc),
    )


def job_list(rows: list[JobRow], limit: int, offset: int, last_seq: int) -> JobList:
    """A page of `limit` jobs; `rows` may hold one more, which says another page exists."""
    return JobList(
        jobs=tuple(job_summary(r) for r in rows[:limit]),
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(rows) > limit else None,
        last_seq=last_seq,
    )


def log_line(rec: Recorded) -> LogLine:
    event = rec.event
    return LogLine(
        seq=rec.seq,
        version=rec.version,
        type=rec.type,
        step=event.step_name,
        attempt=event.attempt,
        ts=format_ts(rec.ts),
        data=msgspec.Raw(ENCODER.encode(event)),
    )


def _step_status(event: StepStarted | StepSucceeded | StepSkipped | StepCanceled) -> dict[str, Any]:
    return {"step": event.step, "status": STEP_STATUS_AFTER[type(event)], "attempt": event.attempt}


def _job_status(event: Event) -> dict[str, Any]:
    return {"status": JOB_STATUS_AFTER[type(event)], "attempt": event.attempt}


def _payload(rec: Recorded) -> dict[str, Any]:  # noqa: C901 - one case per event type
    """The type-specific members of an SSE message's data."""
    match rec.event:
        case StepProgressed() as e:
            return {
                "step": e.step,
                "progressPct": e.pct,
                "etaSeconds": e.eta_seconds,
                "message": e.message,
            }
        case StepStarted() as e:
            return _step_status(e)
        case StepSucceeded() as e:
            return _step_status(e) | {"durationSeconds": e.duration_seconds}
        case StepSkipped() as e:
            return _step_status(e) | {
                "reason": e.reason,
                "reusedFromAttempt": e.reused_from_attempt,
            }
        case StepCanceled() as e:
            return _step_status(e)
        case StepFailed() as e:
            return {
                "step": e.step,
                "error": e.error,
                "status": STEP_STATUS_AFTER[StepFailed],
                "attempt": e.attempt,
            }
        case JobCreated() | JobInterrupted() as e:
            extra = {"step": e.step} if isinstance(e, JobInterrupted) else {"preset": e.preset}
            return _job_status(e) | extra
        case JobStarted() as e:
            return _job_status(e)
        case JobRetryRequested() as e:
            return _job_status(e) | {"fromStep": e.from_step}
        case JobCancelRequested() as e:
            return {"status": CANCELING, "attempt": e.attempt}
        case JobSucceeded() as e:
            return _job_status(e) | {"output": e.output}
        case JobFailed() as e:
            return _job_status(e) | {"error": e.error}
        case JobCanceled() as e:
            return _job_status(e)
        case JobWarning() as e:
            return {"code": e.code, "message": e.message, "step": e.step, "attempt": e.attempt}
    raise TypeError(f"no wire mapping for {rec.type}")  # pragma: no cover - closed union


def event_data(rec: Recorded) -> dict[str, Any]:
    """The `data:` object of the SSE message for `rec`: jobId, type, ts, then the payload."""
    return {"jobId": rec.job_id, "type": rec.type, "ts": format_ts(rec.ts)} | _payload(rec)
