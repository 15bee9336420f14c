"""Cancel, retry from the failed step, and reuse of earlier attempts' artifacts.

The render tests use the real pipeline (espeak-ng, ffmpeg, ffprobe) on a short draft brief.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from runner_support import (
    assert_consistent,
    child_pids,
    file_step,
    gate_step,
    is_type,
    pipeline,
    settings_for,
    sleep_step,
    temp_files,
    types_of,
    until,
    wait_for,
    wait_gone,
)

from aura.engine.config.inputs import Brief, JobRequest, Options
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import Conflict
from aura.engine.run import job_run
from aura.engine.run.context import StepContext
from aura.engine.run.decide import job_id_for_key
from aura.http.app import create_app
from aura.projections.events import Artifact, StepSkipped, StepSucceeded
from aura.projections.job import JobStatus, StepStatus

SHORT = JobRequest(
    preset="default",
    brief=Brief(title="Cancel me", script=("One short line.", "And another one.")),
    options=Options(quality="draft", encoder="x264"),
)
DRAFT = JobRequest(options=Options(quality="draft"))


async def _pids_of(name: str) -> list[int]:
    """Wait until a child process called `name` runs under this test; its pids."""
    await until(lambda: child_pids(name))
    pids: list[int] = child_pids(name)
    return pids


def _ffprobe(path: str) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


async def test_cancel_during_broll_kills_ffmpeg_then_retry_reuses_narration(
    tmp_path: Path,
) -> None:
    async with await Engine.open(settings_for(tmp_path, kill_grace_seconds=2.0)) as engine:
        job_id = (await engine.submit(SHORT)).job.job_id
        work = engine.settings.job_dir(job_id)
        await wait_for(engine.log, job_id, is_type("StepStarted", "broll"))
        ffmpeg = await _pids_of("ffmpeg")
        await until(lambda: temp_files(work))  # ffmpeg is writing its temp output
        assert child_pids("ffmpeg") == ffmpeg  # still rendering

        canceled = await engine.cancel(job_id)

        assert canceled.status is JobStatus.CANCELED
        assert await asyncio.to_thread(wait_gone, ffmpeg, 1.0) == []
        assert temp_files(work) == []
        statuses = {s.name: s.status for s in canceled.steps}
        assert statuses == {
            "preflight": StepStatus.SUCCEEDED,
            "narration": StepStatus.SUCCEEDED,
            "broll": StepStatus.CANCELED,
            "subtitles": StepStatus.PENDING,  # remaining steps stay Pending
            "mux": StepStatus.PENDING,
        }
        records = await engine.log.read(job_id)
        assert types_of(records)[-3:] == ["JobCancelRequested", "StepCanceled:broll", "JobCanceled"]
        with pytest.raises(Conflict):
            await engine.cancel(job_id)  # already canceled

        retried = await engine.retry(job_id)
        assert (retried.status, retried.attempt) == (JobStatus.QUEUED, 2)
        await engine.run_until_idle()

        records = await engine.log.read(job_id)
        assert types_of(records, attempt=2) == [
            "JobRetryRequested",
            "JobStarted",
            "StepStarted:preflight",  # checks the machine as it is now
            "StepSucceeded:preflight",
            "StepSkipped:narration",
            "StepStarted:broll",
            *["StepProgressed:broll"] * _count(records, "StepProgressed", "broll", 2),
            "StepSucceeded:broll",
            *_ran(records, "subtitles", 2),
            *_ran(records, "mux", 2),
            "JobSucceeded",
        ]
        skipped = next(r.event for r in records if isinstance(r.event, StepSkipped))
        assert skipped.reason == "reused from attempt 1" and skipped.reused_from_attempt == 1
        state = await assert_consistent(engine, job_id)
        assert state.status is JobStatus.SUCCEEDED and state.output is not None
        probe = _ffprobe(state.output.video_path)
        codecs = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}  # type: ignore[attr-defined]
        assert codecs["video"] == "h264" and codecs["audio"] == "aac"
        assert state.output.duration_seconds > 1.0
        assert temp_files(work) == []


def _count(records: list, type_: str, step: str, attempt: int) -> int:  # type: ignore[type-arg]
    return sum(
        1
        for r in records
        if r.type == type_ and r.event.step_name == step and r.event.attempt == attempt
    )


def _ran(records: list, step: str, attempt: int) -> list[str]:  # type: ignore[type-arg]
    ticks = _count(records, "StepProgressed", step, attempt)
    return [f"StepStarted:{step}", *[f"StepProgressed:{step}"] * ticks, f"StepSucceeded:{step}"]


async def test_cancelling_a_queued_job_cancels_it_before_it_starts(tmp_path: Path) -> None:
    gates: dict[str, asyncio.Event] = {}
    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(narration=gate_step(gates))
    ) as engine:
        first = (await engine.submit(DRAFT)).job.job_id
        second = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, first, is_type("StepStarted", "narration"))
        canceled = await engine.cancel(second)
        assert canceled.status is JobStatus.CANCELED
        assert all(s.status is StepStatus.PENDING for s in canceled.steps)
        gates.setdefault(first, asyncio.Event()).set()
        await engine.run_until_idle()
        records = await engine.log.read(second)
        assert types_of(records) == ["JobCreated", "JobCancelRequested", "JobCanceled"]
        await assert_consistent(engine, second)
        assert (await assert_consistent(engine, first)).status is JobStatus.SUCCEEDED


async def test_cancel_of_a_finished_job_is_a_conflict(tmp_path: Path) -> None:
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        with pytest.raises(Conflict) as caught:
            await engine.cancel(job_id)
        assert caught.value.code == "InvalidState" and caught.value.http_status == 409
        with pytest.raises(Conflict):
            await engine.retry(job_id)  # only Failed or Canceled jobs retry
        assert (await engine.get(job_id)).status is JobStatus.SUCCEEDED


async def test_cancel_of_a_running_subprocess_step_leaves_nothing_behind(tmp_path: Path) -> None:
    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(subtitles=sleep_step(60))
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, job_id, is_type("StepStarted", "subtitles"))
        sleeps = await _pids_of("sleep")
        with pytest.raises(Conflict):
            await engine.retry(job_id)  # running: not retryable
        state = await engine.cancel(job_id)
        assert state.status is JobStatus.CANCELED
        assert await asyncio.to_thread(wait_gone, sleeps, 1.0) == []
        assert temp_files(engine.settings.job_dir(job_id)) == []
        assert state.step("mux").status is StepStatus.PENDING
        await assert_consistent(engine, job_id)


class Flaky:
    """A mux step that fails while `broken` is set, so a job can fail and then be retried."""

    def __init__(self) -> None:
        self.broken = True

    async def __call__(self, ctx: StepContext) -> list[Artifact]:
        if self.broken:
            raise OSError(28, "No space left on device")
        result: list[Artifact] = await file_step()(ctx)
        return result


async def test_retry_skips_intact_steps_and_reruns_a_step_whose_artifact_is_gone(
    tmp_path: Path,
) -> None:
    mux = Flaky()
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline(mux=mux)) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        failed = await engine.get(job_id)
        assert failed.status is JobStatus.FAILED and failed.errors[-1].code == "OutOfDiskSpace"

        # Attempt 2: narration's file is gone, broll's is altered, subtitles' is intact.
        work = engine.settings.job_dir(job_id)
        (work / "narration.out").unlink()
        (work / "broll.out").write_bytes(b"tampered\n")
        retried = await engine.retry(job_id)
        assert retried.attempt == 2
        await engine.run_until_idle()
        records = await engine.log.read(job_id)
        assert types_of(records, attempt=2) == [
            "JobRetryRequested",
            "JobStarted",
            "StepStarted:preflight",
            "StepSucceeded:preflight",
            "StepStarted:narration",  # its artifact was deleted: it runs again
            "StepSucceeded:narration",  # same bytes as before, so later steps stay valid
            "StepStarted:broll",  # altered: runs again
            "StepSucceeded:broll",
            "StepSkipped:subtitles",
            "StepStarted:mux",
            "StepFailed:mux",
            "JobFailed",
        ]
        assert (work / "narration.out").read_bytes() == b"output of narration\n"

        # Attempt 3: everything intact; only preflight and the failed step run.
        mux.broken = False
        await engine.retry(job_id)
        await engine.run_until_idle()
        records = await engine.log.read(job_id)
        assert types_of(records, attempt=3) == [
            "JobRetryRequested",
            "JobStarted",
            "StepStarted:preflight",
            "StepSucceeded:preflight",
            "StepSkipped:narration",
            "StepSkipped:broll",
            "StepSkipped:subtitles",
            "StepStarted:mux",
            "StepSucceeded:mux",
            "JobSucceeded",
        ]
        reused = {
            r.event.step: r.event.reused_from_attempt
            for r in records
            if isinstance(r.event, StepSkipped) and r.event.attempt == 3
        }
        assert reused == {"narration": 2, "broll": 2, "subtitles": 1}
        state = await assert_consistent(engine, job_id)
        assert (state.status, state.attempt) == (JobStatus.SUCCEEDED, 3)


async def test_a_rerun_step_with_new_output_makes_later_steps_run_again(tmp_path: Path) -> None:
    mux = Flaky()
    versions = iter([b"first\n", b"second\n"])

    async def changing(ctx: StepContext) -> list[Artifact]:
        result: list[Artifact] = await file_step(next(versions))(ctx)
        return result

    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(narration=changing, mux=mux)
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        (engine.settings.job_dir(job_id) / "narration.out").unlink()
        mux.broken = False
        await engine.retry(job_id)
        await engine.run_until_idle()
        records = await engine.log.read(job_id)
        ran = [t for t in types_of(records, attempt=2) if t.startswith("StepSucceeded")]
        assert ran == [
            f"StepSucceeded:{s}" for s in ("preflight", "narration", "broll", "subtitles", "mux")
        ]
        assert not any(isinstance(r.event, StepSkipped) for r in records)
        assert (await assert_consistent(engine, job_id)).status is JobStatus.SUCCEEDED


async def test_retry_is_recorded_before_it_returns(tmp_path: Path) -> None:
    gates: dict[str, asyncio.Event] = {}
    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=gate_step(gates))
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, job_id, is_type("StepStarted", "broll"))
        await engine.cancel(job_id)
        retried = await engine.retry(job_id)
        records = await engine.log.read(job_id)  # the new attempt's run may have begun already
        retry = next(r for r in records if r.type == "JobRetryRequested")
        assert (retried.status, retried.attempt) == (JobStatus.QUEUED, 2)
        assert retried.version == retry.version
        assert all(r.event.attempt == 2 for r in records[retry.version - 1 :])
        gates.setdefault(job_id, asyncio.Event()).set()
        await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
        assert state.status is JobStatus.SUCCEEDED
        assert state.step("narration").status is StepStatus.SKIPPED
        records = await engine.log.read(job_id)  # the whole log now, both attempts
        succeeded = [
            (r.event.attempt, r.event.step) for r in records if isinstance(r.event, StepSucceeded)
        ]
        assert succeeded == [
            (1, "preflight"),
            (1, "narration"),
            *((2, step) for step in ("preflight", "broll", "subtitles", "mux")),
        ]


async def test_a_stalled_probe_of_the_video_times_out_and_a_cancel_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the real ffprobe, except for the finished video: then it hangs (a stalled disk, say)
    stalling = tmp_path / "ffprobe"
    stalling.write_text(
        '#!/bin/sh\ncase "$*" in *video.mp4*) exec sleep 60;; esac\nexec ffprobe "$@"\n'
    )
    stalling.chmod(0o755)
    monkeypatch.setattr(job_run, "OUTPUT_PROBE_SECONDS", 2.0)
    async with await Engine.open(settings_for(tmp_path, ffprobe_path=str(stalling))) as engine:
        job_id = (await engine.submit(SHORT)).job.job_id
        await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
        assert state.status is JobStatus.FAILED
        assert [e.code for e in state.errors] == ["StepTimeout:mux"]
        assert wait_gone(child_pids("sleep")) == []  # the stalled probe was stopped
        # retried, every step is reused and the probe stalls again: a cancel ends it at once
        await engine.retry(job_id)
        stalled = await _pids_of("sleep")
        canceled = await engine.cancel(job_id)
        assert canceled.status is JobStatus.CANCELED
        assert await asyncio.to_thread(wait_gone, stalled, 5.0) == []
        state = await assert_consistent(engine, job_id)
    assert all(step.status is not StepStatus.FAILED for step in state.steps)
    assert [e.code for e in state.errors] == ["StepTimeout:mux"]  # the first attempt's only


async def test_a_moved_data_folder_keeps_its_artifacts_and_its_output(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    first = settings_for(tmp_path / "first")
    job_id = job_id_for_key("moved")
    (first.job_dir(job_id) / "video.mp4" / "in-the-way").mkdir(parents=True)  # mux fails
    async with await Engine.open(first) as engine:
        await engine.submit(SHORT, idempotency_key="moved")
        await engine.run_until_idle()
        assert (await engine.get(job_id)).step("mux").status is StepStatus.FAILED
    second = settings_for(tmp_path / "second")  # restored from a backup; the original is gone
    shutil.copytree(first.data_dir, second.data_dir)
    shutil.rmtree(first.data_dir)
    shutil.rmtree(second.job_dir(job_id) / "video.mp4")
    async with await Engine.open(second) as engine:
        await engine.retry(job_id)
        await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
        records = await engine.log.read(job_id)
    assert state.status is JobStatus.SUCCEEDED
    reused = {r.event.step for r in records if isinstance(r.event, StepSkipped)}
    assert {"narration", "broll", "subtitles"} <= reused
    # moved once more, the finished video is still served
    third = settings_for(tmp_path / "third")
    shutil.copytree(second.data_dir, third.data_dir)
    shutil.rmtree(second.data_dir)
    client = await aiohttp_client(create_app(third))
    resp = await client.get(f"/api/jobs/{job_id}/output")
    assert resp.status == 200, await resp.text()
    assert await resp.read() == (third.job_dir(job_id) / "video.mp4").read_bytes()
