"""The process half of the workers test's "no step ran twice at once": which job's output a
tool works on, from its command line, and which samples show two workers on the same one."""

from __future__ import annotations

from pathlib import Path

from aura.engine.files.atomic import TEMP_MARKER
from aura.tests.e2e.tool_watch import (
    Sample,
    ToolSeen,
    overlaps,
    runners,
    tool_target,
)

SHARED = Path("/srv/artifacts")
JOB = "0c2343b7db8b4e0baf436771c76fa889"
TEMP_BROLL = f"{SHARED}/{JOB}/.broll{TEMP_MARKER}1a2b3c4d.mp4"
#: how engine/tools/process.py starts a tool: setpriv, sh and nice exec'd in turn, one pid
WRAPPER = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/bin/sh", "-c", "exec", "123"]


def tool(worker: int, output: str = "broll", *, job: str = JOB, live: bool = True) -> ToolSeen:
    return ToolSeen(worker=worker, pid=worker * 10, job=job, output=output, live=live)


def test_a_tools_target_is_the_final_name_of_the_last_job_file_it_names() -> None:
    mux = ["ffmpeg", "-i", f"{SHARED}/{JOB}/broll.mp4", "-i", f"{SHARED}/{JOB}/narration.wav"]
    mux += ["-c:v", "libx264", f"{SHARED}/{JOB}/.video{TEMP_MARKER}00ff00ff.mp4", "-y"]
    espeak = ["espeak-ng", "-v", "en", "-w", f"{SHARED}/{JOB}/.line-01{TEMP_MARKER}9e.wav"]
    assert tool_target(mux, SHARED) == (JOB, "video")
    assert tool_target([*espeak, "--", "/a line/that/reads like/a path"], SHARED) == (
        JOB,
        "line-01",
    )
    assert tool_target(["ffprobe", "-v", "error", f"{SHARED}/{JOB}/narration.wav"], SHARED) == (
        JOB,
        "narration",
    )
    assert tool_target([*WRAPPER, "ffmpeg", "-i", "x.png", TEMP_BROLL], SHARED) == (JOB, "broll")


def test_a_tool_naming_no_file_of_a_job_has_no_target() -> None:
    assert tool_target(["ffmpeg", "-version"], SHARED) is None
    assert tool_target(["ffmpeg", "-i", "/usr/share/fonts/x.ttf", "out.mp4"], SHARED) is None
    assert tool_target(["ffprobe", f"{SHARED}/{JOB}"], SHARED) is None  # the folder itself
    assert tool_target(["ffprobe", f"/elsewhere/{JOB}/broll.mp4"], SHARED) is None


def test_two_workers_on_the_same_output_of_a_job_at_once_overlap() -> None:
    sample = Sample(1.0, (tool(1), tool(2, "video"), tool(3)))
    assert overlaps([sample]) == [(tool(1), tool(3))]


def test_what_is_no_overlap() -> None:
    other_job = "ffffffffffffffffffffffffffffffff"
    samples = [
        Sample(1.0, (tool(1), tool(1, "narration"), tool(1))),  # one worker, ffprobe beside ffmpeg
        Sample(2.0, (tool(1), tool(2, "video"), tool(3, job=other_job))),  # other outputs, jobs
        Sample(3.0, (tool(1, live=False), tool(2))),  # a dead worker's tool, still dying
        Sample(4.0, (tool(3),)),  # another worker on it, later
    ]
    assert overlaps(samples) == []


def test_runners_are_the_workers_seen_on_a_job_live_from_a_time_on() -> None:
    samples = [
        Sample(1.0, (tool(1), tool(2, job="other"))),
        Sample(2.0, (tool(1, live=False), tool(3))),
        Sample(3.0, (tool(3, "video"),)),
    ]
    assert runners(samples) == {JOB: {1, 3}, "other": {2}}
    assert runners(samples, 2.0) == {JOB: {3}}
