"""Jobs' event sequences as a run records them, appended through the real EventLog, for the
compaction and backup tests.

`python -m aura.tests.job_logs DATA_DIR` is a writer in another process: it appends finished
jobs to the log, one append each, prints `ready` once it has written READY_JOBS, and stops when
its stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from aura.engine.config.inputs import STEP_NAMES
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
    Output,
    StepCanceled,
    StepFailed,
    StepProgressed,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from aura.store import EventLog
from aura.store.interface import EventStore
from aura.store.jobs_table import JobListProjection

__all__ = ["JOBS", "READY_JOBS", "append_job", "running", "succeeded"]

#: jobs the writer appends before it says `ready`
READY_JOBS = 20
_TICKS = 12
_ERROR = ErrorInfo(code="FFmpegFailedExitCode:1", message="ffmpeg failed", remediation="retry")
_OUTPUT = Output(video_path="final.mp4", size_bytes=4, duration_seconds=2.0, sha256="ab")


def _created() -> list[Event]:
    return [JobCreated(preset="sample-hello-youtube", steps=STEP_NAMES, correlation_id="c")]


def _ticks(step: str, attempt: int, low: float = 0.0, high: float = 95.0) -> list[Event]:
    step_by = (high - low) / _TICKS
    return [
        StepProgressed(
            step=step, pct=low + step_by * i, eta_seconds=float(_TICKS - i), attempt=attempt
        )
        for i in range(1, _TICKS + 1)
    ]


def _step_done(step: str, attempt: int) -> list[Event]:
    artifact = Artifact(name=step, path=f"{step}.out", size_bytes=1, sha256="b")
    return [
        StepStarted(step=step, attempt=attempt),
        *_ticks(step, attempt),
        StepSucceeded(step=step, artifacts=(artifact,), duration_seconds=1.5, attempt=attempt),
    ]


def _steps_until(failing: str, attempt: int = 1) -> list[Event]:
    events: list[Event] = []
    for step in STEP_NAMES[: STEP_NAMES.index(failing)]:
        events += _step_done(step, attempt)
    return events


def succeeded() -> list[Event]:
    events = [*_created(), JobStarted()]
    for step in STEP_NAMES:
        events += _step_done(step, 1)
    return [*events, JobSucceeded(output=_OUTPUT)]


def _failed() -> list[Event]:
    return [
        *_created(),
        JobStarted(),
        *_steps_until("broll"),
        StepStarted(step="broll"),
        *_ticks("broll", 1, high=60.0),
        StepFailed(step="broll", error=_ERROR),
        JobFailed(error=_ERROR),
    ]


def _canceled() -> list[Event]:
    return [
        *_created(),
        JobStarted(),
        *_steps_until("subtitles"),
        StepStarted(step="subtitles"),
        *_ticks("subtitles", 1, high=40.0),
        JobCancelRequested(reason="asked"),
        StepCanceled(step="subtitles"),
        JobCanceled(),
    ]


def _retried() -> list[Event]:
    events = _failed()
    events += [JobRetryRequested(attempt=2, from_step="broll"), JobStarted(attempt=2)]
    events += _step_done("preflight", 2)
    events += [StepSkipped(step="narration", reason="reused", reused_from_attempt=1, attempt=2)]
    for step in STEP_NAMES[STEP_NAMES.index("broll") :]:
        events += _step_done(step, 2)
    return [*events, JobSucceeded(output=_OUTPUT, attempt=2)]


def _interrupted() -> list[Event]:
    """Resumed after a crash in the same attempt: the step's second run reports less than its
    first got to (the bar holds), then it fails."""
    return [
        *_created(),
        JobStarted(),
        *_steps_until("mux"),
        StepStarted(step="mux"),
        *_ticks("mux", 1, high=50.0),
        JobInterrupted(step="mux"),
        JobStarted(),
        StepStarted(step="mux"),
        *_ticks("mux", 1, high=30.0),
        StepFailed(step="mux", error=_ERROR),
        JobFailed(error=_ERROR),
    ]


def running() -> list[Event]:
    return [
        *_created(),
        JobStarted(),
        *_steps_until("narration"),
        StepStarted(step="narration"),
        *_ticks("narration", 1, high=50.0),
    ]


#: a job of each fate, by name
JOBS: dict[str, Callable[[], list[Event]]] = {
    "succeeded": succeeded,
    "failed": _failed,
    "canceled": _canceled,
    "retried": _retried,
    "interrupted": _interrupted,
}


async def append_job(log: EventStore, events: list[Event], appends: int = 4) -> str:
    """Append the job's events in `appends` appends, as a run's commits would; its id."""
    job_id = str(uuid.uuid4())
    size = -(-len(events) // appends)
    version = 0
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        await log.append(job_id, chunk, version)
        version += len(chunk)
    return job_id


async def _write_until_stdin_closes(data_dir: Path) -> None:
    log = await EventLog.open(data_dir)
    await log.attach(JobListProjection())  # the job list in each append, as a server keeps it
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # readable at EOF
    written = 0
    try:
        while not stop.is_set():
            await append_job(log, succeeded(), appends=1)  # every job in the log is whole
            written += 1
            if written == READY_JOBS:
                print("ready", flush=True)
            await asyncio.sleep(0.02)  # a steady writer, not a flood: the log stays small
    finally:
        await log.close()
    print(f"wrote {written}", flush=True)


if __name__ == "__main__":
    asyncio.run(_write_until_stdin_closes(Path(sys.argv[1])))
