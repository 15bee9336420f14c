"""`aura replay` reads a job's timeline from a copy of a data folder, read-only."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

from aura.engine.errors.taxonomy import make_error
from aura.projections.events import (
    JobCreated,
    JobFailed,
    JobStarted,
    StepFailed,
    StepProgressed,
    StepStarted,
)
from aura.store import EventLog


def aura(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aura.cli.main", *args], capture_output=True, text=True, timeout=60
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
