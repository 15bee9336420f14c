"""`aura replay` reads a job's timeline from a copy of a data folder, read-only."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from aura.engine.config.saved_settings import SavedSettings, write_saved
from aura.engine.errors.taxonomy import make_error
from aura.projections.events import (
    JobCreated,
    JobFailed,
    JobStarted,
    JobWarning,
    StepFailed,
    StepProgressed,
    StepStarted,
)
from aura.store import EventLog


def aura(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aura.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def make_failed_job(data_dir: Path) -> None:
    error = make_error("FFmpegFailedExitCode:1", "ffmpeg exited with 1", step="mux")
    async with await EventLog.open(data_dir) as log:
        await log.append("job1", [JobCreated(preset="p", steps=("mux",), correlation_id="c")], 0)
        await log.append(
            "job1",
            [
                JobStarted(),
                StepStarted(step="mux"),
                StepProgressed(step="mux", pct=40.0, eta_seconds=3.0),
                StepFailed(step="mux", error=error),
                JobFailed(error=error),
            ],
            1,
        )


async def test_replay_prints_the_timeline_and_final_state_of_a_copied_folder(
    tmp_path: Path,
) -> None:
    await make_failed_job(tmp_path / "original")
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    result = aura("replay", "job1", "--data-dir", str(tmp_path / "copy"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("StepProgressed" in line and "40% eta 3.0s" in line for line in lines)
    assert any("FFmpegFailedExitCode:1" in line for line in lines)
    assert "state at seq 6: Failed, attempt 1" in result.stdout


async def test_replay_at_a_seq_shows_the_state_then(tmp_path: Path) -> None:
    await make_failed_job(tmp_path)
    result = aura("replay", "job1", "--at", "4", "--json", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert [e["seq"] for e in body["events"]] == [1, 2, 3, 4]
    assert body["state"]["status"] == "Running"
    assert body["state"]["steps"][0]["progressPct"] == 40.0


def test_unknown_job_and_missing_database_are_one_line_errors(tmp_path: Path) -> None:
    missing = aura("replay", "job1", "--data-dir", str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "no database" in missing.stderr


async def test_unknown_job_is_a_one_line_error(tmp_path: Path) -> None:
    await make_failed_job(tmp_path)
    result = aura("replay", "nope", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"aura replay: no job 'nope' in {tmp_path}"


def test_help_lists_the_commands() -> None:
    result = aura("--help")
    for command in ("serve", "sample", "submit", "watch", "replay", "retry", "cancel", "doctor"):
        assert command in result.stdout


async def _make_long_job(data_dir: Path) -> None:
    async with await EventLog.open(data_dir) as log:
        await log.append("long", [JobCreated(preset="p", steps=("mux",), correlation_id="c")], 0)
        ticks = [StepProgressed(step="mux", pct=i / 30) for i in range(3000)]
        await log.append("long", [JobStarted(), StepStarted(step="mux"), *ticks], 1)


def test_a_reader_that_stops_early_ends_replay_quietly(tmp_path: Path) -> None:
    asyncio.run(_make_long_job(tmp_path))
    for extra in ([], ["--json"]):  # far more than a pipe holds; `| head -c 100` reads 100 bytes
        argv = [sys.executable, "-m", "aura.cli.main", "replay", "long", *extra]
        with subprocess.Popen(
            [*argv, "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            assert len(proc.stdout.read(100)) == 100
            proc.stdout.close()  # the reader goes away
            stderr = proc.stderr.read().decode()
            assert proc.wait(timeout=60) == 141, stderr
        assert stderr == ""  # no BrokenPipeError traceback


#: none looks like a key (no `sk-`, no `token=`): only their values can find them
ENV_KEY = "envkey0123456789abc"
TOKEN = "servertoken0123456789"
SAVED_KEY = "savedkey0123456789xyz"


async def _make_job_quoting_secrets(data_dir: Path) -> None:
    """A failed job whose events quote the configured secrets (recorded before they were
    configured, so nothing redacted them then)."""
    error = make_error(
        "Internal",
        f"the provider said: bad key {ENV_KEY}",
        details={"body": f"{{'key': '{SAVED_KEY}'}}", SAVED_KEY: "as a member name"},
        step="narration",
    )
    brief = {"title": f"about {SAVED_KEY}", "script": ["One."]}
    async with await EventLog.open(data_dir) as log:
        created = JobCreated(
            preset="default", brief=brief, steps=("narration",), correlation_id="c"
        )
        await log.append("job1", [created], 0)
        await log.append(
            "job1",
            [
                JobStarted(),
                StepStarted(step="narration"),
                JobWarning(code="W", message=f"sent with {TOKEN}", step="narration"),
                StepFailed(step="narration", error=error),
                JobFailed(error=error),
            ],
            1,
        )


async def test_replay_redacts_the_configured_secrets(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await _make_job_quoting_secrets(data)
    write_saved(data, SavedSettings(openai_api_key=SAVED_KEY))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    env |= {"OPENAI_API_KEY": ENV_KEY, "AURA_TOKEN": TOKEN}
    for extra in (["--json"], []):
        result = aura("replay", "job1", *extra, "--data-dir", str(data), env=env)
        assert result.returncode == 0, result.stderr
        for secret in (ENV_KEY, TOKEN, SAVED_KEY):
            assert secret not in result.stdout, (extra, secret)
        assert "[REDACTED]" in result.stdout
    shown = json.loads(aura("replay", "job1", "--json", "--data-dir", str(data), env=env).stdout)
    failed = shown["events"][-1]["data"]["error"]
    assert failed["message"] == "the provider said: bad key [REDACTED]"
    assert shown["events"][0]["data"]["brief"]["title"] == "about [REDACTED]"
    assert shown["state"]["errors"][-1]["message"] == failed["message"]


async def test_replay_refuses_a_settings_file_it_cannot_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await make_failed_job(data)
    (data / "settings.json").write_text("not json")
    result = aura("replay", "job1", "--json", "--data-dir", str(data))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("aura replay: ") and "settings.json" in result.stderr
    assert result.stderr.count("\n") == 1
