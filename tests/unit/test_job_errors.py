"""The job's `errors`: every attempt's failures, each with its attempt, each failure once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aura.engine.config.inputs import STEP_NAMES, JobRequest
from aura.engine.errors.taxonomy import make_error
from aura.engine.run.decide import created_event, decide_recovery
from aura.engine.run.outcome import decide_probe_timeout, decide_run_failed, step_failed
from aura.projections.events import (
    DECODER,
    Event,
    JobFailed,
    JobRetryRequested,
    JobStarted,
    Recorded,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobState, JobStatus, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEPS = STEP_NAMES


def record(events: list[Event]) -> list[Recorded]:
    return [
        Recorded(i + 1, "j", i + 1, T0 + timedelta(seconds=i), e)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]


def state_of(events: list[Event]) -> JobState:
    state = fold(record(events))
    assert state is not None
    return state


def running(step: str, attempt: int = 1, before: list[Event] | None = None) -> list[Event]:
    """`before` (a new job by default), then attempt `attempt` running `step` (the steps
    before it done)."""
    events = list(before or [created_event(JobRequest(), STEPS, correlation_id="corr")])
    if attempt > 1:
        events = [*events, JobRetryRequested(attempt=attempt)]
    events += [JobStarted(attempt=attempt), *done(STEPS[: STEPS.index(step)], attempt)]
    return [*events, StepStarted(step=step, attempt=attempt)]


def done(steps: tuple[str, ...], attempt: int) -> list[Event]:
    """`steps` run (attempt 1) or are reused (a later one)."""
    if attempt == 1:
        return [e for s in steps for e in (StepStarted(step=s), StepSucceeded(step=s))]
    return [StepSkipped(step=s, attempt=attempt, reason="reused") for s in steps]


def test_a_run_that_fails_outside_its_step_lists_its_failure_once_with_the_step() -> None:
    # StepFailed carries the error with step broll, JobFailed the same error with no step
    events = running("broll")
    failed = decide_run_failed(state_of(events), RuntimeError("append failed"))
    state = state_of([*events, *failed])
    assert state.status is JobStatus.FAILED
    assert [(e.code, e.step, e.attempt) for e in state.errors] == [("Internal", "broll", 1)]


def test_each_error_carries_the_attempt_that_failed_after_a_successful_retry() -> None:
    first = running("broll")
    error = make_error("FFmpegFailedExitCode:1", "ffmpeg failed")
    first += step_failed(state_of(first), "broll", error)
    second = running("mux", attempt=2, before=first)
    second += decide_probe_timeout(state_of(second), 2.0, canceled=False)
    third = running("mux", attempt=3, before=second)
    state = state_of(third)
    assert state.status is JobStatus.RUNNING and state.attempt == 3
    assert [(e.code, e.step, e.attempt) for e in state.errors] == [
        ("FFmpegFailedExitCode:1", "broll", 1),
        ("StepTimeout:mux", "mux", 2),
    ]


def test_the_same_failure_in_two_attempts_is_listed_for_each() -> None:
    # the finished video's probe stalls in both attempts: JobFailed alone, the same error
    first: list[Event] = [*running("mux"), StepSucceeded(step="mux")]
    first += decide_probe_timeout(state_of(first), 2.0, canceled=False)
    second = [*first, JobRetryRequested(attempt=2), JobStarted(attempt=2), *done(STEPS, 2)]
    second += decide_probe_timeout(state_of(second), 2.0, canceled=False)
    state = state_of(second)
    assert [(e.code, e.attempt) for e in state.errors] == [
        ("StepTimeout:mux", 1),
        ("StepTimeout:mux", 2),
    ]


def test_errors_of_a_log_written_before_errors_carried_their_attempt_get_the_events() -> None:
    stored = [
        b'{"type":"JobCreated","attempt":1,"preset":"default","steps":["preflight"],'
        b'"correlationId":"c"}',
        b'{"type":"JobStarted","attempt":1}',
        b'{"type":"StepStarted","attempt":1,"step":"preflight"}',
        b'{"type":"StepFailed","attempt":1,"step":"preflight","error":{"code":"Internal",'
        b'"message":"boom","remediation":"r","details":{},"correlationId":"c","step":"preflight"}}',
        b'{"type":"JobFailed","attempt":1,"error":{"code":"Internal","message":"boom",'
        b'"remediation":"r","details":{},"correlationId":"c","step":null}}',
        b'{"type":"JobRetryRequested","attempt":2,"fromStep":"preflight"}',
        b'{"type":"JobStarted","attempt":2}',
        b'{"type":"StepStarted","attempt":2,"step":"preflight"}',
        b'{"type":"StepFailed","attempt":2,"step":"preflight","error":{"code":"Internal",'
        b'"message":"boom","remediation":"r","details":{},"correlationId":"c","step":"preflight"}}',
        b'{"type":"JobFailed","attempt":2,"error":{"code":"Internal","message":"boom",'
        b'"remediation":"r","details":{},"correlationId":"c","step":"preflight"}}',
    ]
    events: list[Event] = [DECODER.decode(raw) for raw in stored]
    assert all(
        getattr(e, "error", None) is None or e.error.attempt is None  # type: ignore[attr-defined]
        for e in events
    )
    state = state_of(events)
    assert [(e.message, e.step, e.attempt) for e in state.errors] == [
        ("boom", "preflight", 1),
        ("boom", "preflight", 2),
    ]


def test_a_job_failed_as_interrupted_lists_the_attempt_that_was_running() -> None:
    first = running("broll")
    first += step_failed(state_of(first), "broll", make_error("Internal", "boom"))
    second = running("broll", attempt=2, before=first)
    recovered = decide_recovery(state_of(second), "fail")
    failed = recovered[-1]
    assert isinstance(failed, JobFailed) and failed.error.attempt == 2
    state = state_of([*second, *recovered])
    assert [(e.code, e.step, e.attempt) for e in state.errors] == [
        ("Internal", "broll", 1),
        ("Interrupted", "broll", 2),
    ]
