"""The engine's pure decisions: cancel, retry, recovery, reuse, idempotency, progress throttle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aura.engine.config.inputs import STEP_NAMES, Brief, JobRequest, Options
from aura.engine.errors.taxonomy import Conflict
from aura.engine.run.decide import (
    artifacts_changed,
    check_events,
    created_event,
    decide_cancel,
    decide_recovery,
    decide_retry,
    decide_reuse,
    is_duplicate,
    job_id_for_key,
    request_of,
    reuse_candidates,
    should_emit_progress,
)
from aura.projections.events import (
    Artifact,
    ErrorInfo,
    Event,
    JobCanceled,
    JobCancelRequested,
    JobFailed,
    JobInterrupted,
    JobRetryRequested,
    JobStarted,
    JobSucceeded,
    Output,
    Recorded,
    StepCanceled,
    StepFailed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import InvalidTransition, JobState, JobStatus, StepStatus, fold

TS = datetime(2025, 1, 1, tzinfo=UTC)
ERROR = ErrorInfo(code="FFmpegFailedExitCode:1", message="boom", remediation="fix it")


def art(name: str, sha: str = "a" * 64) -> Artifact:
    return Artifact(name=name, path=f"/x/{name}", size_bytes=3, sha256=sha)


def records(*events: Event) -> list[Recorded]:
    created = created_event(JobRequest(), STEP_NAMES, correlation_id="corr")
    return [
        Recorded(i + 1, "job", i + 1, TS, e)  # type: ignore[arg-type]
        for i, e in enumerate((created, *events))
    ]


def state_of(*events: Event) -> JobState:
    state = fold(records(*events))
    assert state is not None
    return state


RUNNING_BROLL = (
    JobStarted(),
    StepStarted(step="preflight"),
    StepSucceeded(step="preflight"),
    StepStarted(step="narration"),
    StepSucceeded(step="narration", artifacts=(art("narration"),)),
    StepStarted(step="broll"),
)
FAILED_IN_BROLL = (*RUNNING_BROLL, StepFailed(step="broll", error=ERROR), JobFailed(error=ERROR))


def test_cancel_of_a_queued_job_cancels_it_at_once() -> None:
    events = decide_cancel(state_of(), owned=False)
    assert events == [JobCancelRequested(), JobCanceled()]
    assert check_events(state_of(), events).status is JobStatus.CANCELED


def test_cancel_of_an_owned_job_only_asks_the_runner() -> None:
    assert decide_cancel(state_of(*RUNNING_BROLL), owned=True) == [JobCancelRequested()]
    asked = state_of(*RUNNING_BROLL, JobCancelRequested())
    assert decide_cancel(asked, owned=True) == []


def test_cancel_of_a_running_job_nobody_here_runs_cancels_its_step() -> None:
    state = state_of(*RUNNING_BROLL)
    events = decide_cancel(state, owned=False)
    assert events == [JobCancelRequested(), StepCanceled(step="broll"), JobCanceled()]
    after = check_events(state, events)
    assert after.step("broll").status is StepStatus.CANCELED
    assert [after.step(s).status for s in ("subtitles", "mux")] == [StepStatus.PENDING] * 2


@pytest.mark.parametrize("end", [JobFailed(error=ERROR), JobCanceled()])
def test_cancel_of_an_ended_job_is_a_conflict(end: Event) -> None:
    with pytest.raises(Conflict) as caught:
        decide_cancel(state_of(end), owned=False)
    assert caught.value.code == "InvalidState"


def test_retry_starts_the_next_attempt_from_the_failed_step() -> None:
    state = state_of(*FAILED_IN_BROLL)
    events = decide_retry(state)
    assert events == [JobRetryRequested(attempt=2, from_step="broll")]
    after = check_events(state, events)
    assert (after.status, after.attempt) == (JobStatus.QUEUED, 2)
    assert after.step("narration").status is StepStatus.SUCCEEDED


@pytest.mark.parametrize("prefix", [(), RUNNING_BROLL])
def test_retry_of_an_active_job_is_a_conflict(prefix: tuple[Event, ...]) -> None:
    with pytest.raises(Conflict):
        decide_retry(state_of(*prefix))


def test_retry_of_a_succeeded_job_is_a_conflict() -> None:
    output = Output(video_path="/v.mp4", size_bytes=1, duration_seconds=1.0, sha256="0" * 64)
    done = [JobStarted(), *(e for s in STEP_NAMES for e in _ran(s)), JobSucceeded(output=output)]
    with pytest.raises(Conflict):
        decide_retry(state_of(*done))


def _ran(step: str) -> tuple[Event, Event]:
    return StepStarted(step=step), StepSucceeded(step=step)


def test_recovery_interrupts_a_running_job_and_resumes_it() -> None:
    state = state_of(*RUNNING_BROLL)
    events = decide_recovery(state, "resume")
    assert events == [JobInterrupted(step="broll")]
    after = check_events(state, events)
    assert after.status is JobStatus.QUEUED
    assert after.step("broll").status is StepStatus.PENDING


def test_recovery_can_fail_an_interrupted_job_with_interrupted() -> None:
    state = state_of(*RUNNING_BROLL)
    events = decide_recovery(state, "fail")
    assert isinstance(events[-1], JobFailed)
    error = events[-1].error
    assert (error.code, error.step, error.correlation_id) == ("Interrupted", "broll", "corr")
    assert check_events(state, events).status is JobStatus.FAILED
    assert decide_retry(check_events(state, events))[0].attempt == 2


def test_recovery_leaves_a_queued_job_alone_and_finishes_a_requested_cancel() -> None:
    assert decide_recovery(state_of(), "resume") == []
    assert decide_recovery(state_of(JobCancelRequested()), "resume") == [JobCanceled()]
    asked = state_of(*RUNNING_BROLL, JobCancelRequested())
    events = decide_recovery(asked, "resume")
    assert events == [JobInterrupted(step="broll"), StepCanceled(step="broll"), JobCanceled()]
    after = check_events(asked, events)
    assert after.status is JobStatus.CANCELED
    assert after.step("broll").status is StepStatus.CANCELED  # as a cancel without a crash


def test_reuse_candidates_are_the_last_successes_with_artifacts() -> None:
    found = reuse_candidates(records(*FAILED_IN_BROLL))
    assert set(found) == {"narration"}  # preflight made no artifact: it always runs again
    assert found["narration"].attempt == 1


def test_a_skipped_step_keeps_pointing_at_the_attempt_that_made_it() -> None:
    skipped = StepSkipped(
        step="narration", attempt=2, reason="reused from attempt 1", reused_from_attempt=1
    )
    history = records(
        *FAILED_IN_BROLL,
        JobRetryRequested(attempt=2, from_step="broll"),
        JobStarted(attempt=2),
        skipped,
    )
    assert reuse_candidates(history)["narration"].attempt == 1


def test_starting_a_step_again_forgets_its_earlier_success() -> None:
    history = records(
        *FAILED_IN_BROLL,
        JobRetryRequested(attempt=2),
        JobStarted(attempt=2),
        StepStarted(step="narration", attempt=2),
    )
    assert "narration" not in reuse_candidates(history)


def test_decide_reuse_skips_only_verified_unchanged_results() -> None:
    cand = reuse_candidates(records(*FAILED_IN_BROLL))["narration"]
    skip = decide_reuse("narration", cand, verified=True, upstream_changed=False, attempt=2)
    assert skip == StepSkipped(
        step="narration", attempt=2, reason="reused from attempt 1", reused_from_attempt=1
    )
    assert (
        decide_reuse("narration", cand, verified=False, upstream_changed=False, attempt=2) is None
    )
    assert decide_reuse("narration", cand, verified=True, upstream_changed=True, attempt=2) is None
    assert decide_reuse("broll", None, verified=True, upstream_changed=False, attempt=2) is None


def test_artifacts_changed_compares_names_and_digests() -> None:
    cand = reuse_candidates(records(*FAILED_IN_BROLL))["narration"]
    assert not artifacts_changed(cand, [art("narration")])
    assert artifacts_changed(cand, [art("narration", "b" * 64)])
    assert artifacts_changed(None, [art("narration")])
    assert not artifacts_changed(None, [])


def test_the_same_key_and_request_is_a_duplicate_and_a_different_one_a_conflict() -> None:
    request = JobRequest(options=Options(quality="draft"))
    created = created_event(request, STEP_NAMES, correlation_id="c", idempotency_key="k")
    assert is_duplicate(created, JobRequest(options=Options(quality="draft")), "k")
    with pytest.raises(Conflict):
        is_duplicate(created, JobRequest(options=Options(quality="high")), "k")
    assert job_id_for_key("k") == job_id_for_key("k") != job_id_for_key("k2")


def test_request_of_gives_back_the_submitted_request() -> None:
    request = JobRequest(
        preset="default",
        brief=Brief(title="T", script=("a", "b"), aspect="9:16"),
        options=Options(timeouts={"mux": 5.0}),
    )
    assert request_of(created_event(request, STEP_NAMES, correlation_id="c")) == request
    assert request_of(created_event(JobRequest(), STEP_NAMES, correlation_id="c")) == JobRequest()


def test_progress_is_recorded_at_most_every_quarter_second_and_one_point() -> None:
    assert should_emit_progress(0.0, 0.0, 5.0, 0.3, False)
    assert not should_emit_progress(0.0, 0.0, 5.0, 0.2, False)  # too soon
    assert not should_emit_progress(5.0, 0.0, 5.5, 1.0, False)  # too small
    assert should_emit_progress(5.0, 0.0, 5.0, 1.0, True)  # a new message
    assert not should_emit_progress(5.0, 0.0, 100.0, 1.0, False)  # 100 is StepSucceeded's


def test_check_events_refuses_an_invalid_transition_before_it_is_appended() -> None:
    with pytest.raises(InvalidTransition):
        check_events(state_of(), [StepStarted(step="preflight")])  # not started
