"""Job and step statuses, their sets, and which status each event implies: written once here.

The fold (projections.job), the job list's rows (projections.job_list) and the SSE messages
(http/wire.py) all read the status an event implies from JOB_STATUS_AFTER and STEP_STATUS_AFTER.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from aura.projections.events import (
    Event,
    JobCanceled,
    JobCreated,
    JobFailed,
    JobInterrupted,
    JobRetryRequested,
    JobStarted,
    JobSucceeded,
    StepCanceled,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)

__all__ = [
    "ACTIVE_JOB_STATUSES",
    "DONE_STEP_STATUSES",
    "JOB_STATUS_AFTER",
    "RETRYABLE_JOB_STATUSES",
    "STEP_STATUS_AFTER",
    "TERMINAL_JOB_STATUSES",
    "JobStatus",
    "StepStatus",
    "job_status_after",
    "step_status_after",
]


class JobStatus(enum.StrEnum):
    QUEUED = "Queued"  #: created or retried, waiting for a runner slot
    RUNNING = "Running"  #: a runner is executing its steps
    SUCCEEDED = "Succeeded"  #: the video exists
    FAILED = "Failed"  #: a step failed; retry may continue from it
    CANCELED = "Canceled"  #: stopped on request; retry may continue


class StepStatus(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"  #: reused from an earlier attempt
    CANCELED = "Canceled"


TERMINAL_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
#: waiting for a runner or running: what a cancel, an interruption or an ETA applies to
ACTIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
#: ended without the video: a retry may continue from the failed or canceled step
RETRYABLE_JOB_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELED})
#: a step whose work is there (run now, or reused from an earlier attempt)
DONE_STEP_STATUSES = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})

#: event type -> the job's status once it is applied; a type not here leaves the status as it
#: is (a cancel request too: the job stays active until JobCanceled)
JOB_STATUS_AFTER: Final[Mapping[type[Event], JobStatus]] = {
    JobCreated: JobStatus.QUEUED,
    JobStarted: JobStatus.RUNNING,
    JobRetryRequested: JobStatus.QUEUED,
    JobInterrupted: JobStatus.QUEUED,
    JobSucceeded: JobStatus.SUCCEEDED,
    JobFailed: JobStatus.FAILED,
    JobCanceled: JobStatus.CANCELED,
}

#: event type -> the status of the event's step once it is applied; progress changes none
STEP_STATUS_AFTER: Final[Mapping[type[Event], StepStatus]] = {
    StepStarted: StepStatus.RUNNING,
    StepSucceeded: StepStatus.SUCCEEDED,
    StepSkipped: StepStatus.SKIPPED,
    StepFailed: StepStatus.FAILED,
    StepCanceled: StepStatus.CANCELED,
}


def job_status_after(event: Event) -> JobStatus | None:
    """The job's status once `event` is applied; None when the event leaves it as it is."""
    return JOB_STATUS_AFTER.get(type(event))


def step_status_after(event: Event) -> StepStatus | None:
    """The status of the event's step once it is applied; None when it changes none."""
    return STEP_STATUS_AFTER.get(type(event))
