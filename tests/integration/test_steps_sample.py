"""The full sample, rendered through the Engine with real espeak-ng, ffmpeg and ffprobe."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_helpers import leftovers, settings_for

from aura.engine.config.inputs import STEP_NAMES, JobRequest
from aura.engine.engine import Engine
from aura.engine.tools import gpu
from aura.engine.tools.media import probe, probe_duration
from aura.projections.events import (
    JobStarted,
    JobSucceeded,
    JobWarning,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobStatus


@pytest.mark.slow
async def test_the_sample_renders_an_h264_720p_video_with_live_step_events(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    engine = await Engine.open(settings)
    try:
        job_id = (await engine.submit(JobRequest())).job.job_id
        await engine.run_until_idle()
        state = await engine.get(job_id)
        records = await engine.log.read(job_id)
    finally:
        await engine.close()

    assert state.status == JobStatus.SUCCEEDED, state.errors
    assert state.output is not None
    video = Path(state.output.video_path)
    info = await probe(video, settings)
    [picture] = info.of_type("video")
    assert (picture.codec_name, picture.width, picture.height) == ("h264", 1280, 720)
    assert [s.codec_name for s in info.of_type("audio")] == ["aac"]
    assert [s.codec_name for s in info.of_type("subtitle")] == ["mov_text"]
    assert info.duration >= 8.0
    narration = await probe_duration(settings.job_dir(job_id) / "narration.wav", settings)
    assert abs(info.duration - narration) <= 0.1 * narration
    assert state.output.duration_seconds == pytest.approx(info.duration, abs=0.01)

    events = [r.event for r in records]
    assert isinstance(events[1], JobStarted) and isinstance(events[-1], JobSucceeded)
    started = [e.step for e in events if isinstance(e, StepStarted)]
    succeeded = [e.step for e in events if isinstance(e, StepSucceeded)]
    assert started == succeeded == list(STEP_NAMES)
    # Throttled StepProgressed events rise within each step; StepSucceeded is the final 100.
    for step in STEP_NAMES:
        pcts = [e.pct for e in events if isinstance(e, StepProgressed) and e.step == step]
        assert pcts == sorted(pcts), f"{step}: {pcts}"
        assert all(0.0 <= p < 100.0 for p in pcts), f"{step}: {pcts}"
        assert state.step(step).progress_pct == 100.0
    for step in ("broll", "mux"):  # long enough for ffmpeg's -progress to be seen
        assert any(isinstance(e, StepProgressed) and e.step == step for e in events), step
    warnings = [e.code for e in events if isinstance(e, JobWarning)]
    assert warnings == ([] if gpu.detect().usable else ["EncoderFallback"])  # encoder auto
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs)
    assert leftovers(settings.data_dir) == []
