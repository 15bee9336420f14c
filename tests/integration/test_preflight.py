"""The system check and the preflight step, against this machine as it is."""

from __future__ import annotations

import platform
import shutil
import sqlite3
from pathlib import Path

import msgspec
import pytest
from render_helpers import DRAFT, SHORT_BRIEF, Recorder, make_ctx, settings_for

from aura.engine.config.inputs import Brief, Options
from aura.engine.errors.taxonomy import TAXONOMY
from aura.engine.steps.preflight import ENCODER_FALLBACK, preflight
from aura.engine.tools import gpu
from aura.engine.tools.preflight import (
    check_gpu,
    check_key,
    check_log,
    check_os,
    estimate_bytes,
    job_findings,
    system_check,
)
from aura.projections.events import JobCreated
from aura.store.log import DB_FILE_NAME, EventLog
from aura.store.schema import MIGRATIONS


async def test_the_system_check_finds_this_machine_ready(tmp_path: Path) -> None:
    findings = await system_check(settings_for(tmp_path))
    by_check = {f.check: f for f in findings}
    assert set(by_check) == {
        "os", "ffmpeg", "ffprobe", "espeak-ng", "output", "log", "disk", "gpu",
        "key:OPENAI_API_KEY",
    }  # fmt: skip
    for name in ("os", "ffmpeg", "ffprobe", "espeak-ng", "output", "log", "disk"):
        assert by_check[name].status == "ok", by_check[name]
    assert by_check["ffmpeg"].message.startswith("ffmpeg version")
    assert not any(f.failed for f in findings)
    key = by_check["key:OPENAI_API_KEY"]
    assert (key.status, key.code) == ("warning", "MissingApiKey:OPENAI_API_KEY")
    wire = msgspec.json.decode(msgspec.json.encode(findings))
    assert {"check", "status", "message", "code", "remediation", "details"} <= set(wire[0])


async def test_every_failing_finding_carries_its_code_and_remediation(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path,
        ffmpeg_path="aura-missing-ffmpeg",
        ffprobe_path="aura-missing-ffprobe",
        espeak_path="aura-missing-espeak",
        min_free_disk_bytes=1 << 62,
    )
    findings = {f.check: f for f in await system_check(settings)}
    assert findings["ffmpeg"].code == "FFmpegNotFound"
    assert findings["ffprobe"].code == "FFmpegNotFound"
    assert findings["espeak-ng"].code == "ToolNotFound:espeak-ng"
    assert findings["disk"].code == "OutOfDiskSpace"
    for finding in findings.values():
        if finding.failed:
            assert finding.code is not None
            assert finding.remediation == TAXONOMY[finding.code.split(":")[0]].remediation


@pytest.mark.parametrize("system", ["FreeBSD", "OpenBSD", "SunOS", "Windows"])
def test_an_operating_system_other_than_linux_or_macos_is_unsupported(system: str) -> None:
    finding = check_os(system)
    assert (finding.status, finding.code) == ("error", f"UnsupportedOS:{system}")
    assert finding.remediation == TAXONOMY["UnsupportedOS"].remediation
    assert finding.details == {"system": system}
    assert check_os("Linux").status == check_os("Darwin").status == "ok"


async def test_the_real_checks_judge_the_platform_this_process_runs_on(tmp_path: Path) -> None:
    # check_os decides for the name it is given; what aura doctor, GET /api/system-check and
    # every job's preflight step show is its decision for platform.system(), this machine's
    here = check_os(platform.system())
    assert check_os() == here and here.details == {"system": platform.system()}
    settings = settings_for(tmp_path)
    assert [f for f in await system_check(settings) if f.check == "os"] == [here]
    found = await job_findings(settings, SHORT_BRIEF, DRAFT, tmp_path)
    assert [f for f in found if f.check == "os"] == [here]


def test_gpu_findings_follow_the_encoder() -> None:
    none = gpu.GpuStatus((), False, "NVML: library not found")
    assert check_gpu("x264", none).status == "ok"
    assert (check_gpu("auto", none).status, check_gpu("auto", none).code) == (
        "warning",
        "RequiresNvidiaGPU",
    )
    assert check_gpu("nvenc", none).code == "RequiresNvidiaGPU"
    no_encoder = gpu.GpuStatus(("NVIDIA H100",), False)
    assert "no NVENC" in check_gpu("nvenc", no_encoder).message
    assert check_gpu("nvenc", gpu.GpuStatus(("RTX",), True)).status == "ok"


def test_a_key_is_reported_set_without_its_value() -> None:
    finding = check_key("OPENAI_API_KEY", "sk-secret-value-123456", required=True)
    assert finding.status == "ok"
    assert "sk-secret" not in msgspec.json.encode(finding).decode()
    assert check_key("OPENAI_API_KEY", None, required=True).status == "error"


def test_the_disk_estimate_grows_with_the_script() -> None:
    longer = Brief(title="t", script=("word " * 50,) * 10)
    assert estimate_bytes(longer) > estimate_bytes(SHORT_BRIEF) > 0


async def test_auto_encoder_without_a_gpu_warns_and_falls_back(tmp_path: Path) -> None:
    recorder = Recorder()
    options = Options(quality="draft", encoder="auto")
    ctx = make_ctx(settings_for(tmp_path), "preflight", options=options, recorder=recorder)
    assert await preflight(ctx) == []
    codes = [code for _, code, _ in recorder.warnings]
    assert codes == ([] if gpu.detect().usable else [ENCODER_FALLBACK])
    assert recorder.progress[-1][1] == 100.0


async def test_a_voice_espeak_lacks_fails_the_job_checks(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    for voice, failed in (("zz-nope", [("voice", "InvalidInput:brief.voice")]), ("de", [])):
        brief = Brief(title="t", script=("hi",), voice=voice)
        findings = await job_findings(settings, brief, DRAFT, settings.job_dir("j"))
        assert [(f.check, f.code) for f in findings if f.failed] == failed, voice


async def test_the_job_checks_need_ffprobe_too(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, ffprobe_path="aura-missing-ffprobe")
    brief = Brief(title="t", script=("hi",))
    findings = await job_findings(settings, brief, DRAFT, settings.job_dir("j"))
    failed = [(f.check, f.code) for f in findings if f.failed]
    assert failed == [("ffprobe", "FFmpegNotFound")]


async def test_the_job_checks_skip_espeak_for_openai_and_need_its_key(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, espeak_path="aura-missing-espeak", openai_api_key="k" * 20)
    brief = Brief(title="t", script=("hi",), tts="openai")
    findings = await job_findings(settings, brief, DRAFT, settings.job_dir("j"))
    checks = [f.check for f in findings]
    assert "espeak-ng" not in checks and "key:OPENAI_API_KEY" in checks
    assert not any(f.failed for f in findings)


def test_gpu_detection_agrees_with_nvml_asked_directly() -> None:
    """Checked against NVML itself, so the tests that branch on `detect().usable` (here: no
    driver, no GPU) cannot be fooled by a detection that calls a missing GPU usable."""
    import pynvml

    status = gpu.detect()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:  # no driver: no GPU at all
        assert (status.names, status.usable) == ((), False)
        assert str(e) in status.reason
        return
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    assert len(status.names) == count
    assert status.usable == (count > 0 and status.can_encode)


async def test_the_log_check_finds_logs_a_render_could_not_use(tmp_path: Path) -> None:
    assert (await check_log(tmp_path / "new")).status == "ok"  # none yet: created on first use
    async with await EventLog.open(tmp_path / "fine") as log:
        await log.append("j", [JobCreated(preset="p", steps=("mux",), correlation_id="c")], 0)
    fine = await check_log(tmp_path / "fine")
    assert fine.status == "ok" and "1 events" in fine.message
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / DB_FILE_NAME).write_text("not a database")
    newer = tmp_path / "newer"
    shutil.copytree(tmp_path / "fine", newer)
    with sqlite3.connect(newer / DB_FILE_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    folder = tmp_path / "folder"
    (folder / DB_FILE_NAME).mkdir(parents=True)
    for data_dir in (garbage, newer, folder):
        found = await check_log(data_dir)
        assert (found.status, found.code) == ("error", "LogUnreadable"), found
        assert found.remediation and str(data_dir) in found.message


async def test_the_system_check_creates_no_folder(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "data"
    by_check = {f.check: f for f in await system_check(settings_for(tmp_path, data_dir=missing))}
    assert by_check["output"].status == "ok" and by_check["log"].status == "ok"
    assert not missing.parent.exists()  # judged by its parent: nothing left behind
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file")
    under_file = settings_for(tmp_path, data_dir=blocker / "data")
    by_check = {f.check: f for f in await system_check(under_file)}
    assert (by_check["output"].status, by_check["output"].code) == (
        "error",
        "OutputDirectoryNotWritable",
    )
