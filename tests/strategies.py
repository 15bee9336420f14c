"""Hypothesis strategies: valid event sequences of one job, as the runner would append them."""

from __future__ import annotations

from hypothesis import strategies as st

from aura.projections.events import (
    Artifact,
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
    StepCanceled,
    StepFailed,
    StepProgressed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)

STEPS = ("preflight", "narration", "broll", "subtitles", "mux")
_ERROR = ErrorInfo(code="FFmpegFailedExitCode:1", message="ffmpeg failed", remediation="fix")
_OUTPUT = Output(video_path="jobs/x/final.mp4", size_bytes=10, duration_seconds=8.0, sha256="a")


def _run_step(draw: st.DrawFn, step: str, attempt: int) -> tuple[list[Event], str]:
    """One step's events and how it ended: succeeded, failed or canceled."""
    events: list[Event] = [StepStarted(step=step, attempt=attempt)]
    pcts = sorted(draw(st.lists(st.floats(0, 100, allow_nan=False), max_size=4)))
    events += [StepProgressed(step=step, pct=p, attempt=attempt) for p in pcts]
    if draw(st.booleans()):
        events.append(JobWarning(code="GpuUnavailable", message="x264", attempt=attempt))
    outcome = draw(st.sampled_from(["succeeded"] * 6 + ["failed", "canceled", "interrupted"]))
    if outcome == "succeeded":
        artifact = Artifact(name=step, path=f"jobs/x/{step}", size_bytes=1, sha256="b")
        events.append(StepSucceeded(step=step, artifacts=(artifact,), attempt=attempt))
    elif outcome == "failed":
        events += [StepFailed(step=step, error=_ERROR, attempt=attempt)]
        events += [JobFailed(error=_ERROR, attempt=attempt)]
    elif outcome == "canceled":
        events += [JobCancelRequested(attempt=attempt), StepCanceled(step=step, attempt=attempt)]
        events += [JobCanceled(attempt=attempt)]
    else:
        events += [JobInterrupted(step=step, attempt=attempt)]
    return events, outcome


def _maybe_pruned(draw: st.DrawFn, events: list[Event], attempt: int) -> list[Event]:
    """An ended job's events, maybe followed by `aura compact --prune-outputs`'s record."""
    if draw(st.booleans()):
        events.append(OutputsPruned(files=3, size_bytes=1000, attempt=attempt))
    return events


@st.composite
def job_events(draw: st.DrawFn) -> list[Event]:
    """JobCreated, then attempts (each may fail, cancel or be interrupted and go on)."""
    events: list[Event] = [
        JobCreated(preset="sample-hello-youtube", steps=STEPS, correlation_id="c")
    ]
    attempt, done = 1, set[str]()
    for _ in range(draw(st.integers(1, 3))):
        events.append(JobStarted(attempt=attempt))
        ended = "succeeded"
        for step in STEPS:
            if step in done and step != "preflight":
                events.append(StepSkipped(step=step, reason="reused", attempt=attempt))
                continue
            step_events, ended = _run_step(draw, step, attempt)
            events += step_events
            if ended != "succeeded":
                break
            done.add(step)
        if ended == "succeeded":
            events.append(JobSucceeded(output=_OUTPUT, attempt=attempt))
            return _maybe_pruned(draw, events, attempt)
        if ended == "interrupted":
            continue  # resumed by recovery in the same attempt
        if not draw(st.booleans()):
            return _maybe_pruned(draw, events, attempt)
        attempt += 1
        events.append(JobRetryRequested(attempt=attempt))
    return events
