"""Typical step durations come from the preset's newest Succeeded jobs, and are read again only
once another of them succeeds."""

from __future__ import annotations

from pathlib import Path

from aura.engine.errors.taxonomy import make_error
from aura.engine.readmodel.eta import RECENT_JOBS, StepEstimates
from aura.engine.readmodel.projector import Projector
from aura.projections.events import (
    Event,
    JobCreated,
    JobFailed,
    JobStarted,
    JobSucceeded,
    Output,
    StepStarted,
    StepSucceeded,
)
from aura.store import EventLog

_OUTPUT = Output(video_path="v.mp4", size_bytes=1, duration_seconds=8.0, sha256="a")
_ERROR = make_error("FFmpegFailedExitCode:1", "ffmpeg exited with 1")


def job(preset: str, mux_seconds: float, *, succeeded: bool = True) -> list[Event]:
    events: list[Event] = [
        JobCreated(preset=preset, steps=("mux",), correlation_id="c"),
        JobStarted(),
        StepStarted(step="mux"),
        StepSucceeded(step="mux", duration_seconds=mux_seconds),
    ]
    return [*events, JobSucceeded(output=_OUTPUT) if succeeded else JobFailed(error=_ERROR)]


async def test_typical_durations_are_the_medians_of_the_presets_newest_succeeded_jobs(
    tmp_path: Path,
) -> None:
    async with await EventLog.open(tmp_path) as log:
        projector = Projector(log)
        await projector.start()
        estimates = StepEstimates(projector.table, projector.success_mark)
        assert await estimates.typical("default") == {}
        for i in range(1, RECENT_JOBS + 3):  # 22 jobs taking 1 s to 22 s: the first two too old
            await log.append(f"d{i}", job("default", float(i)), 0)
        await log.append("failed", job("default", 1000.0, succeeded=False), 0)
        await log.append("other", job("sample-hello-youtube", 500.0), 0)
        typical = await estimates.typical("default")
        assert typical == {"mux": 12.5}  # the median of 3 s .. 22 s
        assert await estimates.typical("sample-hello-youtube") == {"mux": 500.0}

        await log.append("another-failed", job("default", 2000.0, succeeded=False), 0)
        assert await estimates.typical("default") is typical  # no news: not read again
        await log.append("d23", job("default", 100.0), 0)
        assert await estimates.typical("default") == {"mux": 13.5}  # 4 s .. 22 s and 100 s
        await projector.stop()
