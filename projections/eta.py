"""A job's ETA: what its running step has left plus the typical durations of the steps still to
run. Pure: the typical durations and the clock are given."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from datetime import datetime

from aura.projections.job import JobState
from aura.projections.status import ACTIVE_JOB_STATUSES, DONE_STEP_STATUSES, StepStatus

__all__ = ["job_eta", "typical_durations"]


def typical_durations(samples: Iterable[tuple[str, float]]) -> dict[str, float]:
    """The median of each step's (step, seconds) samples; a negative or non-finite one is left
    out (a log written by hand, a clock that jumped)."""
    by_step: dict[str, list[float]] = {}
    for step, seconds in samples:
        if math.isfinite(seconds) and seconds >= 0:
            by_step.setdefault(step, []).append(seconds)
    return {step: statistics.median(values) for step, values in by_step.items()}


def job_eta(state: JobState, typical: Mapping[str, float], now: datetime) -> float | None:
    """Seconds until the job is done, or None when it is not Queued or Running, or when a step
    still to run has no typical duration (and, if running, reports no ETA of its own).

    The running step counts its own etaSeconds when it reports one, else its typical duration
    minus the time it has run (never below 0); steps done count nothing; every other step (pending,
    or waiting to run again) counts its typical duration.
    """
    if state.status not in ACTIVE_JOB_STATUSES:
        return None
    total = 0.0
    for step in state.steps:
        if step.status in DONE_STEP_STATUSES:
            continue
        if step.status is StepStatus.RUNNING and step.eta_seconds is not None:
            total += max(step.eta_seconds, 0.0)
            continue
        estimate = typical.get(step.name)
        if estimate is None:
            return None
        if step.status is StepStatus.RUNNING and step.started_utc is not None:
            estimate = max(estimate - (now - step.started_utc).total_seconds(), 0.0)
        total += estimate
    return total
