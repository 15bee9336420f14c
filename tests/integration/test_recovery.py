"""Crash recovery: jobs the log shows as active are interrupted and resumed at start-up.

Closing an engine stops its runner without appending anything, so the log looks exactly as
after a crash; the last test SIGKILLs a real engine process in the middle of a render.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped]
import pytest
from runner_support import (
    TIMEOUT,
    assert_consistent,
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

from aura.engine.config.inputs import JobRequest, Options
from aura.engine.engine import Engine
from aura.engine.files.atomic import TEMP_MARKER
from aura.projections.events import JobFailed, JobInterrupted, StepSkipped
from aura.projections.job import JobStatus, StepStatus
from aura.store.log import EventLog

DRAFT = JobRequest(options=Options(quality="draft"))
REPO = Path(__file__).resolve().parents[2]


async def _interrupted_in_broll(tmp_path: Path) -> str:
    """A job left Running in broll by an engine that stopped (as the log sees a crash)."""
    engine = await Engine.open(settings_for(tmp_path), pipeline=pipeline(broll=sleep_step(60)))
    try:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, job_id, is_type("StepStarted", "broll"))
    finally:
        await engine.close()
    return job_id


async def test_an_interrupted_job_resumes_from_its_step_reusing_earlier_ones(
    tmp_path: Path,
) -> None:
    job_id = await _interrupted_in_broll(tmp_path)
    work = settings_for(tmp_path).job_dir(job_id)
    orphan = work / f".broll{TEMP_MARKER}dead.mp4"
    orphan.write_bytes(b"half a video")
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        assert engine.recovered == [job_id]
        await engine.run_until_idle()
        records = await engine.log.read(job_id)
        interrupted = [r.event for r in records if isinstance(r.event, JobInterrupted)]
        assert interrupted == [JobInterrupted(step="broll", attempt=1)]
        after = types_of(records)[types_of(records).index("JobInterrupted:broll") :]
        assert after == [
            "JobInterrupted:broll",
            "JobStarted",
            "StepStarted:preflight",
            "StepSucceeded:preflight",
            "StepSkipped:narration",
            "StepStarted:broll",
            "StepSucceeded:broll",
            "StepStarted:subtitles",
            "StepSucceeded:subtitles",
            "StepStarted:mux",
            "StepSucceeded:mux",
            "JobSucceeded",
        ]
        state = await assert_consistent(engine, job_id)
        assert (state.status, state.attempt) == (JobStatus.SUCCEEDED, 1)
        assert not orphan.exists() and temp_files(work) == []


async def test_with_on_interrupted_fail_the_job_fails_with_interrupted(tmp_path: Path) -> None:
    job_id = await _interrupted_in_broll(tmp_path)
    settings = settings_for(tmp_path, on_interrupted="fail")
    async with await Engine.open(settings, pipeline=pipeline()) as engine:
        assert engine.recovered == []
        state = await assert_consistent(engine, job_id)
        assert state.status is JobStatus.FAILED
        error = state.errors[-1]
        assert (error.code, error.step) == ("Interrupted", "broll")
        assert error.correlation_id == state.correlation_id and error.remediation
        assert state.step("broll").status is StepStatus.PENDING
        records = await engine.log.read(job_id)
        assert [type(r.event) for r in records[-2:]] == [JobInterrupted, JobFailed]
        await engine.retry(job_id)
        await engine.run_until_idle()
        assert (await assert_consistent(engine, job_id)).status is JobStatus.SUCCEEDED


async def test_a_row_that_does_not_decode_leaves_the_other_jobs_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = await _interrupted_in_broll(tmp_path)  # Running in the log
    settings = settings_for(tmp_path)
    with sqlite3.connect(settings.data_dir / "aura.db") as conn:  # a newer build's event type
        seq, version = conn.execute(
            "SELECT max(seq), (SELECT max(version) FROM events WHERE job_id = ?) FROM events",
            (job_id,),
        ).fetchone()
        conn.execute(
            "INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data) VALUES "
            "(?, ?, ?, 'JobArchived', NULL, 1, '2026-11-25T12:00:00.000000Z', ?)",
            (seq + 1, job_id, version + 1, '{"type": "JobArchived", "attempt": 1}'),
        )
    async with await Engine.open(settings, pipeline=pipeline()) as engine:  # it refused to start
        assert engine.recovered == []  # that job is left as the log says, and named
        assert f"event seq {seq + 1} cannot be decoded" in caplog.text
        other = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        assert (await assert_consistent(engine, other)).status is JobStatus.SUCCEEDED
        assert job_id in {row.job_id for row in await engine.list_jobs()}


async def test_queued_jobs_are_queued_again_in_submission_order(tmp_path: Path) -> None:
    gates: dict[str, asyncio.Event] = {}
    settings = settings_for(tmp_path, max_concurrent_jobs=1)
    engine = await Engine.open(settings, pipeline=pipeline(narration=gate_step(gates)))
    try:
        ids = [(await engine.submit(DRAFT)).job.job_id for _ in range(3)]
        await wait_for(engine.log, ids[0], is_type("StepStarted", "narration"))
    finally:
        await engine.close()
    async with await Engine.open(settings, pipeline=pipeline()) as engine:
        assert engine.recovered == ids
        await engine.run_until_idle()
        started: list[tuple[int, str]] = []
        for job_id in ids:
            records = await engine.log.read(job_id)
            started += [(r.seq, job_id) for r in records if r.type == "JobStarted"]
            interrupted = any(isinstance(r.event, JobInterrupted) for r in records)
            assert interrupted is (job_id == ids[0])
            assert (await assert_consistent(engine, job_id)).status is JobStatus.SUCCEEDED
        assert [job_id for _seq, job_id in sorted(started)][-3:] == ids


async def test_without_recovery_active_jobs_are_left_as_the_log_says(tmp_path: Path) -> None:
    job_id = await _interrupted_in_broll(tmp_path)
    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(), recover=False
    ) as engine:
        await engine.run_until_idle()
        assert (await engine.get(job_id)).status is JobStatus.RUNNING
        canceled = await engine.cancel(job_id)  # nobody here runs it: canceled in the log
        assert canceled.status is JobStatus.CANCELED
        assert canceled.step("broll").status is StepStatus.CANCELED
        await assert_consistent(engine, job_id)


# ---- a real engine process, SIGKILLed mid-render ---------------------------------------------


def _start_worker(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aura.engine.run.worker", "--data-dir", str(data_dir), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "AURA_FFMPEG_THREADS": "1"},
    )


async def _codecs(path: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        *("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().split()


def _reap(worker: subprocess.Popen[str]) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait()
    if worker.stdout is not None:
        worker.stdout.close()


async def _message(stream: IO[str] | None, key: str) -> dict[str, object]:
    """The worker's next stdout message holding `key`."""
    assert stream is not None
    async with asyncio.timeout(TIMEOUT):
        while True:
            line = await asyncio.to_thread(stream.readline)
            assert line, "the worker exited"
            message: dict[str, object] = json.loads(line)
            if key in message:
                return message


async def test_a_sigkilled_engine_leaves_no_ffmpeg_and_the_restart_finishes_the_render(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    request = json.dumps(
        {
            "preset": "default",
            "brief": {"title": "Crash test", "script": ["One short line.", "And another."]},
            "options": {"quality": "draft", "encoder": "x264"},
        }
    )
    worker = _start_worker(data_dir, "--submit", request)
    try:
        await _message(worker.stdout, "ready")
        job_id = str((await _message(worker.stdout, "submitted"))["submitted"])
        work = data_dir / "jobs" / job_id
        async with await EventLog.open(data_dir, readonly=True, poll_interval=0.02) as log:
            await wait_for(log, job_id, is_type("StepStarted", "broll"))
        parent = psutil.Process(worker.pid)

        def rendering() -> list[int]:
            """broll's ffmpeg, writing its temp file (not another step's)."""
            found = [p.pid for p in parent.children(recursive=True) if p.name() == "ffmpeg"]
            writing = any(p.name.startswith(".broll.") for p in temp_files(work))
            return found if found and writing else []

        await until(rendering)
        ffmpeg = rendering()
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker.wait, TIMEOUT)
    finally:
        _reap(worker)

    # The parent-death signal took ffmpeg down with the engine; its temp file is an orphan.
    assert await asyncio.to_thread(wait_gone, ffmpeg, 5.0) == []
    assert temp_files(work)

    restarted = _start_worker(data_dir, "--exit-when-idle")
    try:
        ready = await _message(restarted.stdout, "ready")
        assert ready["recovered"] == [job_id]
        await _message(restarted.stdout, "idle")
        assert await asyncio.to_thread(restarted.wait, TIMEOUT) == 0
    finally:
        _reap(restarted)

    async with await Engine.open(settings_for(tmp_path), recover=False) as engine:
        records = await engine.log.read(job_id)
        names = types_of(records)
        assert names.count("JobInterrupted:broll") == 1 and names.count("JobCreated") == 1
        assert names.index("JobInterrupted:broll") > names.index("StepStarted:broll")
        skipped = [r.event.step for r in records if isinstance(r.event, StepSkipped)]
        assert skipped == ["narration"]
        state = await assert_consistent(engine, job_id)  # versions contiguous, row == replay
        assert state.status is JobStatus.SUCCEEDED and state.output is not None
        assert state.output.duration_seconds > 1.0
        probe = await _codecs(state.output.video_path)
        assert "h264" in probe and "aac" in probe
        assert temp_files(work) == []
