"""The run's pure outcome decisions: how a step's end, a stopped probe or a failed run end a job."""

from __future__ import annotations

import asyncio
import errno
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace
from strategies import job_events

from aura.engine.config.inputs import STEP_NAMES, JobRequest
from aura.engine.errors.taxonomy import AuraError, make_error
from aura.engine.run.decide import check_events, created_event
from aura.engine.run.outcome import (
    StepEnd,
    decide_probe_timeout,
    decide_run_failed,
    decide_step_outcome,
    map_step_error,
    step_canceled,
    step_failed,
    timeout_error,
)
from aura.projections.events import (
    Artifact,
    Event,
    JobCanceled,
    JobCancelRequested,
    JobFailed,
    JobStarted,
    Recorded,
    StepCanceled,
    StepFailed,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobState, JobStatus, StepStatus, fold

TS = datetime(2025, 1, 1, tzinfo=UTC)
ART = Artifact(name="broll", path="/x/broll.mp4", size_bytes=3, sha256="a" * 64)


def fold_events(events: list[Event]) -> JobState:
    records = [
        Recorded(i + 1, "job", i + 1, TS, e)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]
    state = fold(records)
    assert state is not None
    return state


def running(step: str = "broll", *, cancel: bool = False) -> JobState:
    """A job whose `step` runs (the steps before it succeeded); `cancel`: a cancel requested."""
    created = created_event(JobRequest(), STEP_NAMES, correlation_id="corr")
    events: list[Event] = [created, JobStarted()]
    for name in STEP_NAMES[: STEP_NAMES.index(step)]:
        events += [StepStarted(step=name), StepSucceeded(step=name)]
    events.append(StepStarted(step=step))
    if cancel:
        events.append(JobCancelRequested())
    return fold_events(events)


def test_a_step_that_returned_succeeds_with_its_artifacts_and_rounded_duration() -> None:
    end = StepEnd(artifacts=(ART,), duration=1.23456)
    events = decide_step_outcome(running(), "broll", end, limit=None)
    assert events == [
        StepSucceeded(step="broll", attempt=1, artifacts=(ART,), duration_seconds=1.235)
    ]


def test_a_timeout_fails_the_step_and_the_job_naming_its_limit() -> None:
    end = StepEnd(error=TimeoutError(), timed_out=True, duration=2.5)
    events = decide_step_outcome(running(), "broll", end, limit=2.5)
    error = make_error(
        "StepTimeout:broll",
        "step broll ran past its limit of 2.5 s and was stopped",
        details={"limitSeconds": 2.5},
        step="broll",
        correlation_id="corr",
        attempt=1,
    )
    assert events == [StepFailed(step="broll", attempt=1, error=error), JobFailed(error=error)]


def test_a_timeout_fails_the_step_even_when_a_cancel_was_requested() -> None:
    end = StepEnd(error=TimeoutError(), timed_out=True)
    events = decide_step_outcome(running(cancel=True), "broll", end, limit=10)
    assert [type(e) for e in events] == [StepFailed, JobFailed]


def test_an_error_under_a_cancel_request_cancels_the_step_and_the_job() -> None:
    end = StepEnd(error=asyncio.CancelledError())
    events = decide_step_outcome(running(cancel=True), "broll", end, limit=None)
    assert events == [StepCanceled(step="broll"), JobCanceled()]
    assert events == step_canceled(running(), "broll")


def test_a_step_that_returned_under_a_cancel_request_still_succeeds() -> None:
    events = decide_step_outcome(running(cancel=True), "broll", StepEnd(), limit=None)
    assert [type(e) for e in events] == [StepSucceeded]


def test_a_step_that_cancelled_itself_fails_internal() -> None:
    end = StepEnd(error=asyncio.CancelledError())
    [failed, job_failed] = decide_step_outcome(running(), "broll", end, limit=None)
    assert isinstance(failed, StepFailed) and isinstance(job_failed, JobFailed)
    assert failed.error.code == "Internal"
    assert failed.error.message == "step broll stopped on its own"
    assert failed.error == job_failed.error


def test_an_error_maps_to_its_code_with_step_correlation_id_and_secrets_redacted() -> None:
    error = OSError(errno.ENOSPC, "No space left", "/data/sk-abcdefghijklmnop.wav")
    [failed, job_failed] = decide_step_outcome(
        running("narration"), "narration", StepEnd(error=error), limit=None
    )
    assert isinstance(failed, StepFailed) and isinstance(job_failed, JobFailed)
    assert failed.error == job_failed.error
    assert failed.error.code == "OutOfDiskSpace"
    assert (failed.error.step, failed.error.correlation_id) == ("narration", "corr")
    assert "sk-abcdefghijklmnop" not in str(failed.error.details)
    assert failed.error == replace(map_step_error(error, "narration", "corr"), attempt=1)


def test_a_taxonomy_error_keeps_its_code_and_takes_the_step() -> None:
    raised = AuraError(make_error("InvalidInput", "no script"))
    [failed, _] = decide_step_outcome(running(), "broll", StepEnd(error=raised), limit=None)
    assert isinstance(failed, StepFailed)
    assert (failed.error.code, failed.error.step) == ("InvalidInput", "broll")


def test_step_failed_stamps_the_step_and_the_correlation_id() -> None:
    events = step_failed(running(), "broll", make_error("Internal", "no step named 'broll'"))
    assert [type(e) for e in events] == [StepFailed, JobFailed]
    assert all(
        isinstance(e, StepFailed | JobFailed)
        and (e.error.step, e.error.correlation_id) == ("broll", "corr")
        for e in events
    )


def test_a_stalled_probe_fails_the_job_with_the_last_steps_timeout_and_no_step_failed() -> None:
    state = running("mux")
    state = check_events(state, [StepSucceeded(step="mux")])
    [event] = decide_probe_timeout(state, 2.0, canceled=False)
    assert isinstance(event, JobFailed)
    assert event.error == make_error(
        "StepTimeout:mux",
        "probing the finished video took longer than 2 s",
        details={"limitSeconds": 2.0},
        step="mux",
        correlation_id="corr",
        attempt=1,
    )


def test_a_probe_stopped_by_a_cancel_cancels_the_job() -> None:
    state = check_events(running("mux", cancel=True), [StepSucceeded(step="mux")])
    assert decide_probe_timeout(state, 2.0, canceled=True) == [JobCanceled()]


def test_both_timeouts_share_their_code_and_details() -> None:
    error = timeout_error("mux", 3.0, "anything")
    assert (error.code, error.details, error.message) == (
        "StepTimeout:mux",
        {"limitSeconds": 3.0},
        "anything",
    )


def test_a_failed_run_fails_the_running_step_and_the_job() -> None:
    events = decide_run_failed(running(), RuntimeError("boom"))
    [failed, job_failed] = events
    assert isinstance(failed, StepFailed) and isinstance(job_failed, JobFailed)
    assert failed.step == "broll" and failed.error.step == "broll"
    assert job_failed.error.step is None and job_failed.error.correlation_id == "corr"
    assert job_failed.error.code == "Internal"
    assert failed.error.attempt == job_failed.error.attempt == 1


def test_a_failed_run_of_an_ended_job_appends_nothing() -> None:
    state = check_events(running(), step_canceled(running(), "broll"))
    assert decide_run_failed(state, RuntimeError("boom")) == []


# ---- properties -----------------------------------------------------------------------------

ERRORS = st.sampled_from(
    [
        None,
        RuntimeError("boom"),
        asyncio.CancelledError(),
        TimeoutError(),
        OSError(errno.ENOSPC, "No space left"),
        AuraError(make_error("InvalidInput", "no script")),
    ]
)


@st.composite
def running_states(draw: st.DrawFn) -> tuple[JobState, str]:
    """A job from a generated log, cut just after one of its StepStarted (maybe with a cancel
    requested), and the step that runs."""
    events = draw(job_events())
    starts = [i for i, e in enumerate(events) if isinstance(e, StepStarted)]
    cut = draw(st.sampled_from(starts))
    started = events[cut]
    assert isinstance(started, StepStarted)
    prefix = events[: cut + 1]
    if draw(st.booleans()):
        prefix.append(JobCancelRequested(attempt=started.attempt))
    return fold_events(prefix), started.step


@given(
    running_states(),
    ERRORS,
    st.booleans(),
    st.floats(0, 1e6, allow_nan=False),
    st.lists(st.just(ART), max_size=2),
)
def test_every_step_outcome_is_a_valid_end_of_the_step(
    at: tuple[JobState, str],
    error: BaseException | None,
    timed_out: bool,
    duration: float,
    artifacts: list[Artifact],
) -> None:
    state, step = at
    end = StepEnd(artifacts=tuple(artifacts), error=error, timed_out=timed_out, duration=duration)
    events = decide_step_outcome(state, step, end, limit=5.0)
    after = check_events(state, events)  # raises InvalidTransition for an invalid one
    status = after.step(step).status
    if timed_out:
        assert after.status is JobStatus.FAILED and status is StepStatus.FAILED
        assert after.errors[-1].code == f"StepTimeout:{step}"
    elif error is None:
        assert after.status is JobStatus.RUNNING and status is StepStatus.SUCCEEDED
    elif state.cancel_requested:
        assert after.status is JobStatus.CANCELED and status is StepStatus.CANCELED
    else:
        assert after.status is JobStatus.FAILED and status is StepStatus.FAILED
    new_errors = after.errors[len(state.errors) :]
    assert len(new_errors) <= 1  # a failure is listed once
    assert all(e.step == step and e.correlation_id == "c" for e in new_errors)
    assert all(e.attempt == state.attempt for e in new_errors)
    assert all(e.attempt == state.attempt for e in events)


@given(job_events(), st.data())
def test_a_failed_run_ends_any_job_failed_with_no_step_left_running(
    events: list[Event], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(1, len(events)))
    state = fold_events(events[:cut])
    decided = decide_run_failed(state, RuntimeError("boom"))
    after = check_events(state, decided)
    if state.is_terminal:
        assert decided == []
    else:
        assert after.status is JobStatus.FAILED
        assert all(s.status is not StepStatus.RUNNING for s in after.steps)
        # the failure is listed once, with its attempt (and its step when one was running)
        [error] = after.errors[len(state.errors) :]
        assert (error.code, error.attempt) == ("Internal", state.attempt)
        running_steps = [s.name for s in state.steps if s.status is StepStatus.RUNNING]
        assert error.step == (running_steps[0] if running_steps else None)
