"""Each seed error code, produced for real on this machine, mapped, and leaving nothing behind."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import ffmpeg
import psutil  # type: ignore[import-untyped]
import pytest
from render_helpers import DRAFT, SHORT_BRIEF, leftovers, make_ctx, run_steps, settings_for
from runner_support import child_pids, until, wait_gone

from aura.engine.config.inputs import Brief, JobRequest, Options
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.mapping import map_exception
from aura.engine.errors.taxonomy import TAXONOMY, base_code
from aura.engine.files import atomic
from aura.engine.run.context import Step
from aura.engine.steps.broll import broll
from aura.engine.steps.mux import mux
from aura.engine.steps.narration import narration
from aura.engine.steps.preflight import preflight
from aura.engine.tools import gpu
from aura.engine.tools.ffmpeg import ffmpeg_argv, run_ffmpeg
from aura.engine.tools.process import ProcessFailed
from aura.projections.events import Artifact, ErrorInfo, StepFailed
from aura.projections.job import JobStatus


async def fail(step: Step, settings: Settings, name: str, **kwargs: object) -> ErrorInfo:
    """Run `step` expecting it to fail; the mapped error, checked for its common fields."""
    ctx = make_ctx(settings, name, **kwargs)
    with pytest.raises(Exception) as caught:
        await step(ctx)
    info = map_exception(caught.value, step=name, correlation_id="corr-1", settings=settings)
    assert info.step == name and info.correlation_id == "corr-1"
    assert info.remediation and info.message
    return info


def assert_code(info: ErrorInfo, code: str) -> None:
    assert info.code == code, info
    assert info.remediation == TAXONOMY[base_code(code)].remediation


async def test_ffmpeg_missing_fails_preflight_with_ffmpeg_not_found(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, ffmpeg_path="aura-no-ffmpeg-here")
    info = await fail(preflight, settings, "preflight")
    assert_code(info, "FFmpegNotFound")
    assert leftovers(tmp_path) == []


async def test_ffmpeg_missing_mid_pipeline_maps_to_ffmpeg_not_found(tmp_path: Path) -> None:
    artifacts = await run_steps(settings_for(tmp_path), until="narration")
    broken = settings_for(tmp_path, ffmpeg_path=str(tmp_path / "bin" / "ffmpeg"))
    info = await fail(broll, broken, "broll", artifacts=artifacts)
    assert_code(info, "FFmpegNotFound")
    assert not (broken.job_dir("job-1") / "broll.mp4").exists()
    assert leftovers(tmp_path) == []


async def test_a_bad_filter_is_ffmpeg_failed_exit_code_with_the_stderr_tail(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    source = ffmpeg.input("testsrc2=s=160x120:d=1", f="lavfi").filter("aura_no_such_filter")
    with pytest.raises(Exception) as caught:
        async with atomic.produce(tmp_path / "bad.mp4") as temp:
            await run_ffmpeg(
                ffmpeg_argv(source.output(str(temp)), settings), settings, duration_seconds=1
            )
    info = map_exception(caught.value, step="broll", correlation_id="c", settings=settings)
    assert isinstance(caught.value, ProcessFailed) and caught.value.returncode != 0
    assert_code(info, f"FFmpegFailedExitCode:{caught.value.returncode}")
    assert "aura_no_such_filter" in info.details["stderrTail"]
    assert leftovers(tmp_path) == []


async def test_a_corrupt_input_fails_mux_with_ffmpeg_failed_exit_code(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    artifacts = await run_steps(settings, until="subtitles")
    fake = tmp_path / "data" / "jobs" / "job-1" / "broll.mp4"
    fake.write_bytes(b"not a video at all")
    artifacts["broll"] = Artifact(name="broll", path=str(fake), size_bytes=18, sha256="x")
    with pytest.raises(ProcessFailed) as caught:
        await mux(make_ctx(settings, "mux", artifacts=artifacts))
    assert caught.value.returncode != 0
    info = map_exception(caught.value, step="mux", correlation_id="c", settings=settings)
    assert_code(info, f"FFmpegFailedExitCode:{caught.value.returncode}")
    assert not (fake.parent / "video.mp4").exists()
    assert leftovers(tmp_path) == []


async def test_a_step_past_its_limit_is_step_timeout_and_its_ffmpeg_is_killed(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    # about 8 s of b-roll here at high quality: its ffmpeg is surely running at 1.5 s
    long_brief = Brief(
        title="Long", script=("A rather long line to make the b-roll take time.",) * 12
    )
    request = JobRequest(
        preset="default",
        brief=long_brief,
        options=Options(quality="high", encoder="x264", timeouts={"broll": 1.5}),
    )
    engine = await Engine.open(settings)
    try:
        job_id = (await engine.submit(request)).job.job_id
        run = asyncio.create_task(engine.run_until_idle())
        pids: list[int] = []

        def rendering() -> bool:
            """broll's ffmpeg is running (not preflight's `ffmpeg -version`)."""
            found = [p for p in child_pids("ffmpeg") if _writes_broll(p)]
            pids.extend(found)
            return bool(found)

        await until(rendering)
        await run
        state = await engine.get(job_id)
        records = await engine.log.read(job_id)
    finally:
        await engine.close()
    assert state.status == JobStatus.FAILED
    [failed] = [r.event for r in records if isinstance(r.event, StepFailed)]
    assert_code(failed.error, "StepTimeout:broll")
    assert failed.error.step == "broll"
    assert await asyncio.to_thread(wait_gone, pids, 5.0) == []
    assert not (settings.job_dir(job_id) / "broll.mp4").exists()
    assert leftovers(tmp_path) == []


def test_a_timeout_error_maps_to_step_timeout_of_the_step() -> None:
    info = map_exception(TimeoutError(), step="mux", correlation_id="c")
    assert_code(info, "StepTimeout:mux")


async def test_openai_narration_without_a_key_fails_preflight(tmp_path: Path) -> None:
    brief = Brief(title="t", script=("hi",), tts="openai")
    info = await fail(preflight, settings_for(tmp_path), "preflight", brief=brief)
    assert_code(info, "MissingApiKey:OPENAI_API_KEY")


async def test_a_refused_connection_is_transient_network_failure(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "sk-test-secret-key-1234567890"
    settings = settings_for(
        tmp_path, openai_api_key=secret, openai_base_url=f"http://127.0.0.1:{port}/v1"
    )
    brief = Brief(title="t", script=("hi",), tts="openai")
    settings.job_dir("job-1").mkdir(parents=True)
    info = await fail(narration, settings, "narration", brief=brief)
    assert_code(info, "TransientNetworkFailure")
    assert secret not in str(info)
    assert leftovers(tmp_path) == []


async def test_nvenc_without_an_nvidia_gpu_is_requires_nvidia_gpu(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    options = Options(quality="draft", encoder="nvenc")
    if gpu.detect().usable:  # a machine with an NVENC GPU passes this check instead
        assert await preflight(make_ctx(settings, "preflight", options=options)) == []
        return
    info = await fail(preflight, settings, "preflight", options=options)
    assert_code(info, "RequiresNvidiaGPU")


async def test_a_data_folder_under_a_regular_file_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    settings = settings_for(tmp_path, data_dir=blocker / "data")
    info = await fail(preflight, settings, "preflight")
    assert_code(info, "OutputDirectoryNotWritable")
    assert leftovers(tmp_path) == []


async def test_a_folder_where_a_file_goes_is_named_not_the_temp_file(tmp_path: Path) -> None:
    in_the_way = tmp_path / "subtitles.srt"
    (in_the_way / "inside").mkdir(parents=True)  # a folder where the file is to be renamed
    with pytest.raises(OSError) as caught:
        atomic.write_text(in_the_way, "1")
    info = map_exception(caught.value, step="subtitles", correlation_id="c")
    assert_code(info, "OutputDirectoryNotWritable")
    assert info.details["path"] == str(in_the_way) and str(in_the_way) in info.message
    assert leftovers(tmp_path) == []


async def test_a_write_into_a_missing_folder_path_maps_to_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OSError) as caught:
        atomic.write_text(blocker / "subtitles.srt", "1")
    info = map_exception(caught.value, step="subtitles", correlation_id="c")
    assert_code(info, "OutputDirectoryNotWritable")


async def test_free_disk_below_the_threshold_is_out_of_disk_space(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, min_free_disk_bytes=1 << 62)
    info = await fail(preflight, settings, "preflight", brief=SHORT_BRIEF, options=DRAFT)
    assert_code(info, "OutOfDiskSpace")
    assert info.details["requiredBytes"] > info.details["freeBytes"]
    assert leftovers(tmp_path) == []


async def test_an_ffmpeg_that_cannot_finish_its_output_fails_even_when_it_exits_0(
    tmp_path: Path,
) -> None:
    # ffmpeg 5.1 does this on a full disk (tests/e2e/test_disk_faults.py shows it on a real
    # one): it reports the trailer it could not write, and exits 0 with the file cut short
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'Error writing trailer of out.mp4: No space left on device' >&2\n"
        "echo 'Error closing file out.mp4: No space left on device' >&2\n"
    )
    fake.chmod(0o755)
    settings = settings_for(tmp_path, ffmpeg_path=str(fake))
    with pytest.raises(ProcessFailed) as caught:
        await run_ffmpeg([str(fake), "out.mp4"], settings, duration_seconds=1.0)
    assert caught.value.returncode == 0
    info = map_exception(caught.value, step="mux", settings=settings)
    assert_code(info, "OutOfDiskSpace")
    assert "No space left on device" in info.message


def _writes_broll(pid: int) -> bool:
    try:
        return any(".broll." in arg for arg in psutil.Process(pid).cmdline())
    except psutil.Error:  # gone already
        return False
