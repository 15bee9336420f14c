"""The job projection is a pure fold: incremental equals full replay; impossible events raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace
from strategies import STEPS, job_events

from aura.projections.events import (
    ErrorInfo,
    Event,
    JobCreated,
    JobFailed,
    JobInterrupted,
    JobRetryRequested,
    JobStarted,
    JobWarning,
    Recorded,
    StepFailed,
    StepProgressed,
    StepStarted,
)
from aura.projections.job import InvalidTransition, JobStatus, StepStatus, apply, fold
from aura.projections.job_list import ROW_EVENTS, JobRow, apply_row

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(events: list[Event], job_id: str = "j", first_seq: int = 1) -> list[Recorded]:
    return [
        Recorded(first_seq + i, job_id, i + 1, T0 + timedelta(seconds=i), e)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]


@given(job_events(), st.data())
def test_folding_in_two_parts_equals_folding_at_once(
    events: list[Event], data: st.DataObject
) -> None:
    records = record(events)
    split = data.draw(st.integers(0, len(records)))
    assert fold(records[split:], fold(records[:split])) == fold(records)


@given(job_events())
def test_every_prefix_folds_incrementally_to_the_replay(events: list[Event]) -> None:
    records = record(events)
    state = None
    for i, rec in enumerate(records):
        state = apply(state, rec)
        assert state == fold(records[: i + 1])
        assert state.version == rec.version and state.last_seq == rec.seq


@given(job_events())
def test_job_row_fold_equals_the_row_of_the_replayed_state(events: list[Event]) -> None:
    records = record(events)
    row = None
    for rec in records:
        new = apply_row(row, rec)
        if type(rec.event) not in ROW_EVENTS:  # what lets the projection skip such events
            assert new is row
        row = new
    state = fold(records)
    assert state is not None
    assert row == JobRow.of(state)


@given(job_events(), st.data())
def test_applying_the_events_again_from_any_point_leaves_the_row_as_it_is(
    events: list[Event], data: st.DataObject
) -> None:
    records = record(events)
    row = None
    for rec in records:
        row = apply_row(row, rec)
    again = row
    for rec in records[data.draw(st.integers(0, len(records)), label="from") :]:
        again = apply_row(again, rec)
    assert again == row


def test_a_job_runs_fails_and_retries_from_the_failed_step() -> None:
    from aura.engine.errors.taxonomy import make_error

    error = make_error("FFmpegNotFound", "no ffmpeg", step="narration")
    events: list[Event] = [
        JobCreated(preset="p", steps=STEPS, correlation_id="c"),
        JobStarted(),
        StepStarted(step="preflight"),
    ]
    state = fold(record(events))
    assert state is not None and state.status is JobStatus.RUNNING
    assert state.step("preflight").status is StepStatus.RUNNING
    failed = fold(record([*events, StepFailed(step="preflight", error=error)]))
    assert failed is not None and failed.errors == (replace(error, attempt=1),)
    failure = [StepFailed(step="preflight", error=error), JobFailed(error=error)]
    retried = fold(record([*events, *failure, JobRetryRequested(attempt=2)]))
    assert retried is not None
    assert (retried.status, retried.attempt) == (JobStatus.QUEUED, 2)
    assert retried.step("preflight").status is StepStatus.PENDING
    assert retried.errors == (replace(error, attempt=1),)  # the step's error, listed once


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([JobStarted()], "JobStarted before JobCreated"),
        ([JobCreated(preset="p", steps=STEPS, correlation_id="c")] * 2, "JobCreated twice"),
        (
            [JobCreated(preset="p", steps=STEPS, correlation_id="c"), StepStarted(step="mux")],
            "StepStarted while the job is Queued",
        ),
        (
            [
                JobCreated(preset="p", steps=STEPS, correlation_id="c"),
                JobRetryRequested(attempt=2),
            ],
            "JobRetryRequested while the job is Queued",
        ),
        (
            [
                JobCreated(preset="p", steps=STEPS, correlation_id="c"),
                JobStarted(),
                StepStarted(step="nope"),
            ],
            "unknown step 'nope'",
        ),
    ],
)
def test_impossible_events_raise_invalid_transition_naming_the_seq(
    events: list[Event], message: str
) -> None:
    with pytest.raises(InvalidTransition, match=message) as caught:
        fold(record(events, first_seq=10))
    assert caught.value.seq == 9 + len(events)


def test_a_gap_in_versions_is_an_invalid_transition() -> None:
    created, started = record(
        [JobCreated(preset="p", steps=STEPS, correlation_id="c"), JobStarted()]
    )
    gap = Recorded(started.seq, started.job_id, 3, started.ts, started.event)
    with pytest.raises(InvalidTransition, match="version 3 follows version 1"):
        fold([created, gap])


def test_the_same_warning_recorded_again_in_one_attempt_is_listed_once() -> None:
    warning = JobWarning(code="EncoderFallback", message="libx264", step="preflight")
    events: list[Event] = [
        JobCreated(preset="p", steps=STEPS, correlation_id="c"),
        JobStarted(),
        StepStarted(step="preflight"),
        warning,
        JobInterrupted(step="preflight"),
        JobStarted(),
        StepStarted(step="preflight"),
        warning,
    ]
    state = fold(record(events))
    assert state is not None and len(state.warnings) == 1
    failure: list[Event] = [
        StepFailed(step="preflight", error=_error()),
        JobFailed(error=_error()),
        JobRetryRequested(attempt=2),
        JobStarted(attempt=2),
        StepStarted(step="preflight", attempt=2),
        JobWarning(code="EncoderFallback", message="libx264", step="preflight", attempt=2),
    ]
    retried = fold(record([*events[:4], *failure]))
    assert retried is not None and [w.attempt for w in retried.warnings] == [1, 2]


def _error() -> ErrorInfo:
    return ErrorInfo(code="Internal", message="x", remediation="y")


def test_a_step_bar_never_goes_back_within_an_attempt_and_starts_at_zero_in_the_next() -> None:
    def pct(events: list[Event]) -> float:
        state = fold(record(events))
        assert state is not None
        return state.step("preflight").progress_pct

    run: list[Event] = [
        JobCreated(preset="p", steps=STEPS, correlation_id="c"),
        JobStarted(),
        StepStarted(step="preflight"),
        StepProgressed(step="preflight", pct=60.0),
    ]
    assert pct(run) == 60.0
    resumed = [*run, JobInterrupted(step="preflight"), JobStarted(), StepStarted(step="preflight")]
    assert pct(resumed[:-2]) == 60.0  # interrupted: Pending, its bar held
    assert pct(resumed) == 60.0  # started again in the same attempt
    assert pct([*resumed, StepProgressed(step="preflight", pct=10.0)]) == 60.0
    assert pct([*resumed, StepProgressed(step="preflight", pct=75.0)]) == 75.0
    retried = [
        *run,
        StepFailed(step="preflight", error=_error()),
        JobFailed(error=_error()),
        JobRetryRequested(attempt=2),
        JobStarted(attempt=2),
        StepStarted(step="preflight", attempt=2),
    ]
    assert pct(retried) == 0.0  # a new attempt runs the step anew
