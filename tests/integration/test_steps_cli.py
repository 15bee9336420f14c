"""`aura sample` and `aura doctor` as a user runs them: real processes, real renders."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from render_helpers import leftovers

from aura.store import EventLog

AURA = [sys.executable, "-m", "aura.cli.main"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    return env | extra


def test_sample_prints_step_bars_and_the_video_path_last(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [*AURA, "sample", "--quality", "draft", "--encoder", "x264", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    video = Path(result.stdout.strip().splitlines()[-1])
    assert video.is_file() and video.suffix == ".mp4" and video.stat().st_size > 0
    assert video.is_relative_to(data.resolve())
    for step in ("preflight", "narration", "broll", "subtitles", "mux"):
        assert f"{step:<10} [########################] 100.0% Succeeded" in result.stderr
    assert leftovers(data) == []


#: runs `python ARGS...` with SIGINT as a parent left it (sys.argv[1]): at its default (a
#: terminal's foreground job), ignored (a script's background job: `make test &`) or blocked
_INHERITING = """
import os, signal, sys
how, args = sys.argv[1], sys.argv[2:]
signal.signal(signal.SIGINT, signal.SIG_IGN if how == "ignored" else signal.SIG_DFL)
mask = signal.SIG_BLOCK if how == "blocked" else signal.SIG_UNBLOCK
signal.pthread_sigmask(mask, {signal.SIGINT})
os.execv(sys.executable, [sys.executable, *args])
"""


@pytest.mark.parametrize("inherited", ["default", "ignored", "blocked"])
def test_ctrl_c_cancels_the_render_cleanly(tmp_path: Path, inherited: str) -> None:
    data = tmp_path / "data"
    argv = ["-m", "aura.cli.main", "sample", "--encoder", "x264", "--data-dir", str(data)]
    with subprocess.Popen(
        [sys.executable, "-c", _INHERITING, inherited, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        assert proc.stderr is not None
        seen = ""
        # the b-roll's ffmpeg is starting or running; Ctrl-C is taken before the job is submitted
        while "broll " not in seen:
            line = proc.stderr.readline()
            assert line, f"aura sample ended early: {seen}"
            seen += line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + err
    assert "canceled" in err
    assert out == ""
    assert leftovers(data) == []
    assert asyncio.run(_event_types(data))[-2:] == ["StepCanceled", "JobCanceled"]


async def _event_types(data: Path) -> list[str]:
    async with await EventLog.open(data) as log:
        return [r.type for r in await log.tail(0)]


def test_doctor_prints_each_finding_and_fails_when_ffmpeg_is_missing(tmp_path: Path) -> None:
    args = [*AURA, "doctor", "--data-dir", str(tmp_path / "data")]
    ok = subprocess.run(args, capture_output=True, text=True, env=_env(), check=False)
    assert ok.returncode == 0, ok.stdout
    assert "[ok  ] ffmpeg: ffmpeg version" in ok.stdout
    assert "ready to render" in ok.stdout.splitlines()[-1]

    broken = _env(AURA_FFMPEG="aura-no-such-ffmpeg")
    bad = subprocess.run([*args, "--json"], capture_output=True, text=True, env=broken, check=False)
    assert bad.returncode == 1
    findings = {f["check"]: f for f in json.loads(bad.stdout)}
    assert findings["ffmpeg"]["status"] == "error"
    assert findings["ffmpeg"]["code"] == "FFmpegNotFound"
    assert "apt-get install ffmpeg" in findings["ffmpeg"]["remediation"]
