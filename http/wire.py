"""The JSON shapes the HTTP API answers, and the mapping of log events to SSE messages.

The public job shape is built field by field from `JobState`, so the projection's internal
fields (cancel flag, version) never leak into a response; its correlation id and last seq are
shown (a page resumes the job's stream after `lastSeq`). Timestamps are ISO 8601 UTC with
microseconds and a `Z`, like the log's `ts` column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import web

from aura.projections.events import (
    EVENT_TYPES,
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
    OutputsPruned,
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
    "JSON",
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
    "json_response",
    "log_line",
]

#: the one JSON encoder of the HTTP layer (responses, problems, SSE data)
ENCODER = msgspec.json.Encoder()
JSON = "application/json"

#: event type -> SSE event name (the seed's names are the wire's)
WIRE_NAMES: dict[type[Event], str] = {
    StepProgressed: "step-progress",
    StepStarted: "step-status",
    StepSucceeded: "step-status",
    StepSkipped: "step-status",
    StepCanceled: "step-status",
    StepFailed: "step-error",
    JobCreated: "job-status",
    JobStarted: "job-status",
    JobRetryRequested: "job-status",
    JobInterrupted: "job-status",
    JobCancelRequested: "job-status",
    JobSucceeded: "job-completed",
    JobFailed: "job-failed",
    JobWarning: "job-warning",
    JobCanceled: "job-canceled",
    OutputsPruned: "job-output-pruned",
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
    #: when `aura compact --prune-outputs` deleted the job's files (output and artifacts);
    #: null while they are kept
    output_pruned_utc: str | None
    #: the seq of the last event folded into this view
    last_seq: int
    #: seconds until the job is done (see projections.eta); null when unknown, when the job is
    #: not Queued or Running, and in a view of a past seq
    eta_seconds: float | None
    #: LogUnwritable while the server knows more than the log says: the job's failure waits to
    #: be recorded because the log refuses writes (status and errors are then behind); else null
    unrecorded: ErrorInfo | None


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
    #: the rows skipped, as asked; null for a page that starts at a cursor
    offset: int | None
    #: the offset of the next page; null on the last page, and when paging by cursor
    next_offset: int | None
    #: where the next page starts (`?cursor=`), or null on the last page: preferred to
    #: nextOffset, as fast deep in the list as on its first page
    next_cursor: str | None
    #: the log's seq the rows are consistent with: GET /api/events resumes after it
    last_seq: int
    #: the list is being rebuilt from the log (after an upgrade or a lost position): the rows
    #: are those of the events up to last_seq, so jobs whose events all come later are missing
    #: for now; GET /api/events after last_seq brings every change since
    rebuilding: bool = False


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


def json_response(
    value: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = JSON,
) -> web.Response:
    """`value` encoded as the body of a response."""
    return web.Response(
        body=ENCODER.encode(value), status=status, content_type=content_type, headers=headers
    )


def job_view(
    state: JobState, eta_seconds: float | None = None, unrecorded: ErrorInfo | None = None
) -> JobView:
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
        output_pruned_utc=format_optional_ts(state.output_pruned_utc),
        last_seq=state.last_seq,
        eta_seconds=eta_seconds,
        unrecorded=unrecorded,
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


def job_list(
    rows: list[JobRow],
    limit: int,
    offset: int | None,
    next_cursor: str | None,
    last_seq: int,
    *,
    rebuilding: bool = False,
) -> JobList:
    """A page of at most `limit` jobs; `next_cursor` is None on the last page."""
    more = next_cursor is not None
    return JobList(
        jobs=tuple(job_summary(r) for r in rows[:limit]),
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more and offset is not None else None,
        next_cursor=next_cursor,
        last_seq=last_seq,
        rebuilding=rebuilding,
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


def _progress(e: StepProgressed) -> dict[str, Any]:
    return {"step": e.step, "progressPct": e.pct, "etaSeconds": e.eta_seconds, "message": e.message}


def _step_succeeded(e: StepSucceeded) -> dict[str, Any]:
    return _step_status(e) | {"durationSeconds": e.duration_seconds}


def _step_skipped(e: StepSkipped) -> dict[str, Any]:
    return _step_status(e) | {"reason": e.reason, "reusedFromAttempt": e.reused_from_attempt}


def _step_failed(e: StepFailed) -> dict[str, Any]:
    return {
        "step": e.step,
        "error": e.error,
        "status": STEP_STATUS_AFTER[StepFailed],
        "attempt": e.attempt,
    }


def _job_created(e: JobCreated) -> dict[str, Any]:
    return _job_status(e) | {"preset": e.preset}


def _job_retried(e: JobRetryRequested) -> dict[str, Any]:
    return _job_status(e) | {"fromStep": e.from_step}


def _job_interrupted(e: JobInterrupted) -> dict[str, Any]:
    return _job_status(e) | {"step": e.step}


def _cancel_requested(e: JobCancelRequested) -> dict[str, Any]:
    return {"status": CANCELING, "attempt": e.attempt}


def _job_succeeded(e: JobSucceeded) -> dict[str, Any]:
    return _job_status(e) | {"output": e.output}


def _job_failed(e: JobFailed) -> dict[str, Any]:
    return _job_status(e) | {"error": e.error}


def _outputs_pruned(e: OutputsPruned) -> dict[str, Any]:
    return {"files": e.files, "sizeBytes": e.size_bytes, "attempt": e.attempt}


def _warning(e: JobWarning) -> dict[str, Any]:
    return {"code": e.code, "message": e.message, "step": e.step, "attempt": e.attempt}


#: event type -> the type-specific members of its SSE message's data
_PAYLOADS: dict[type[Event], Callable[[Any], dict[str, Any]]] = {
    StepProgressed: _progress,
    StepStarted: _step_status,
    StepSucceeded: _step_succeeded,
    StepSkipped: _step_skipped,
    StepCanceled: _step_status,
    StepFailed: _step_failed,
    JobCreated: _job_created,
    JobStarted: _job_status,
    JobRetryRequested: _job_retried,
    JobInterrupted: _job_interrupted,
    JobCancelRequested: _cancel_requested,
    JobSucceeded: _job_succeeded,
    JobFailed: _job_failed,
    JobCanceled: _job_status,
    JobWarning: _warning,
    OutputsPruned: _outputs_pruned,
}


def event_data(rec: Recorded) -> dict[str, Any]:
    """The `data:` object of the SSE message for `rec`: jobId, type, ts, then the payload."""
    event = rec.event
    payload = _PAYLOADS[type(event)](event)
    return {"jobId": rec.job_id, "type": rec.type, "ts": format_ts(rec.ts)} | payload


def _check_wire() -> None:
    # The union is closed: a new event type without its SSE name or payload fails here, at
    # import, not in a stream at run time.
    for what, table in (("wire name", WIRE_NAMES), ("payload", _PAYLOADS)):
        missing = [cls.__name__ for cls in EVENT_TYPES if cls not in table]
        if missing:
            raise TypeError(f"http/wire.py has no {what} for {', '.join(missing)}")


_check_wire()
