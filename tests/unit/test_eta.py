"""The job ETA is the running step's remaining time plus the typical durations of the rest."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from strategies import STEPS, job_events

from aura.projections.eta import job_eta, typical_durations
from aura.projections.events import (
    ErrorInfo,
    Event,
    JobCreated,
    JobFailed,
    JobRetryRequested,
    JobStarted,
    Recorded,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobState, JobStatus, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TYPICAL = {"preflight": 1.0, "narration": 10.0, "broll": 20.0, "subtitles": 2.0, "mux": 30.0}
ERROR = ErrorInfo(code="FFmpegFailedExitCode:1", message="ffmpeg failed", remediation="fix")


def state_of(events: list[Event]) -> JobState:
    """The folded state; event i is recorded at T0 + i seconds."""
    records = [
        Recorded(i + 1, "j", i + 1, T0 + timedelta(seconds=i), e)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]
    state = fold(records)
    assert state is not None
    return state


CREATED = JobCreated(preset="default", steps=STEPS, correlation_id="c")


def test_typical_durations_are_the_median_of_each_steps_samples() -> None:
    samples = [("mux", 3.0), ("mux", 1.0), ("mux", 2.0), ("broll", 4.0), ("broll", 6.0)]
    assert typical_durations(samples) == {"mux": 2.0, "broll": 5.0}


def test_typical_durations_leave_out_impossible_samples() -> None:
    samples = [("mux", -1.0), ("mux", math.nan), ("mux", math.inf), ("broll", 0.0)]
    assert typical_durations(samples) == {"broll": 0.0}
    assert typical_durations([]) == {}


def test_a_queued_job_waits_for_every_steps_typical_duration() -> None:
    assert job_eta(state_of([CREATED]), TYPICAL, T0) == sum(TYPICAL.values())


def test_a_running_step_counts_its_own_eta_and_done_steps_nothing() -> None:
    state = state_of(
        [
            CREATED,
            JobStarted(),
            StepStarted(step="preflight"),
            StepSucceeded(step="preflight", duration_seconds=1.0),
            StepStarted(step="narration"),
            StepProgressed(step="narration", pct=50.0, eta_seconds=4.5),
        ]
    )
    assert job_eta(state, TYPICAL, T0 + timedelta(hours=1)) == 4.5 + 20.0 + 2.0 + 30.0


def test_a_running_step_without_an_eta_counts_its_typical_duration_less_its_time_so_far() -> None:
    state = state_of([CREATED, JobStarted(), StepStarted(step="preflight")])  # started at T0+2s
    started = T0 + timedelta(seconds=2)
    rest = 10.0 + 20.0 + 2.0 + 30.0
    assert job_eta(state, TYPICAL, started) == 1.0 + rest
    assert job_eta(state, TYPICAL, started + timedelta(seconds=0.25)) == 0.75 + rest
    # running longer than usual: nothing left for it, never less
    assert job_eta(state, TYPICAL, started + timedelta(seconds=60)) == rest


def test_unknown_without_a_typical_duration_for_a_step_still_to_run() -> None:
    queued = state_of([CREATED])
    assert job_eta(queued, {}, T0) is None
    assert job_eta(queued, {k: v for k, v in TYPICAL.items() if k != "mux"}, T0) is None
    running = state_of([CREATED, JobStarted(), StepStarted(step="preflight")])
    assert job_eta(running, {k: v for k, v in TYPICAL.items() if k != "preflight"}, T0) is None
    # a running step with an ETA of its own needs no typical duration
    ticking = state_of(
        [
            CREATED,
            JobStarted(),
            *[e for step in STEPS[:-1] for e in (StepStarted(step=step), StepSucceeded(step=step))],
            StepStarted(step="mux"),
            StepProgressed(step="mux", pct=10.0, eta_seconds=7.0),
        ]
    )
    assert job_eta(ticking, {}, T0) == 7.0


def test_a_retried_job_counts_only_the_steps_it_runs_again() -> None:
    state = state_of(
        [
            CREATED,
            JobStarted(),
            StepStarted(step="preflight"),
            StepSucceeded(step="preflight"),
            StepStarted(step="narration"),
            StepFailed(step="narration", error=ERROR),
            JobFailed(error=ERROR),
            JobRetryRequested(attempt=2),
        ]
    )
    assert state.status is JobStatus.QUEUED
    assert job_eta(state, TYPICAL, T0) == 10.0 + 20.0 + 2.0 + 30.0


@given(job_events(), st.dictionaries(st.sampled_from(STEPS), st.floats(0, 1e6)))
def test_eta_is_null_once_ended_and_never_negative(
    events: list[Event], typical: dict[str, float]
) -> None:
    state = state_of(events)
    eta = job_eta(state, typical, T0 + timedelta(seconds=len(events)))
    if state.is_terminal:
        assert eta is None
    elif set(typical) == set(STEPS):
        assert eta is not None and eta >= 0  # every step has a typical duration: known
    if eta is not None:
        assert eta >= 0
