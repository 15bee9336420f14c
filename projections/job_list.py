"""The job-list read model: one row per job, a pure fold over the log (any job, any order).

The projector (aura.engine.readmodel.projector) keeps these rows in the `jobs` table and
records the seq it has applied up to; the rows must always equal
`JobRow.of(fold(job's events))`. Most events (step transitions, progress, warnings) change no
row: `apply_row` returns the same row object for them, so the table is written only when a row
really changes, and a caller may skip every event whose type is not in ROW_EVENTS without
calling it.

Applying a job's events again, from any earlier one to the last, to the row they made leaves
the row as it is (every field is set by the last event that sets it, `started_utc` by the first
JobStarted after JobCreated): so the projector may save a position behind its rows.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec.structs import replace

from aura.projections.events import (
    JobCanceled,
    JobCreated,
    JobFailed,
    JobInterrupted,
    JobRetryRequested,
    JobStarted,
    JobSucceeded,
    Recorded,
)
from aura.projections.job import JobState
from aura.projections.status import JOB_STATUS_AFTER, JobStatus

__all__ = ["ROW_EVENTS", "JobRow", "apply_row"]

#: the event types that can change a job's row: those that set the job's status (the row's
#: attempt and times change only with it); `apply_row` returns any other event's row as is
ROW_EVENTS: frozenset[type] = frozenset(JOB_STATUS_AFTER)


class JobRow(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    job_id: str
    preset: str
    status: JobStatus
    attempt: int
    created_utc: datetime
    started_utc: datetime | None = None
    ended_utc: datetime | None = None

    @classmethod
    def of(cls, state: JobState) -> JobRow:
        return cls(
            job_id=state.job_id,
            preset=state.preset,
            status=state.status,
            attempt=state.attempt,
            created_utc=state.created_utc,
            started_utc=state.started_utc,
            ended_utc=state.ended_utc,
        )


def apply_row(row: JobRow | None, rec: Recorded) -> JobRow | None:
    """The row after `rec`; None only while the job has no JobCreated yet."""
    event = rec.event
    if isinstance(event, JobCreated):
        return JobRow(
            job_id=rec.job_id,
            preset=event.preset,
            status=JOB_STATUS_AFTER[JobCreated],
            attempt=event.attempt,
            created_utc=rec.ts,
        )
    if row is None:
        return None
    match event:
        case JobStarted():
            return replace(
                row,
                status=JOB_STATUS_AFTER[JobStarted],
                started_utc=row.started_utc or rec.ts,
            )
        case JobSucceeded() | JobFailed() | JobCanceled():
            return replace(row, status=JOB_STATUS_AFTER[type(event)], ended_utc=rec.ts)
        case JobRetryRequested():
            return replace(
                row,
                status=JOB_STATUS_AFTER[JobRetryRequested],
                attempt=event.attempt,
                ended_utc=None,
            )
        case JobInterrupted():
            return replace(row, status=JOB_STATUS_AFTER[JobInterrupted])
        case _:
            return row  # the same object: the projection writes nothing for it
