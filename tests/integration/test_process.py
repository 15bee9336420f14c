"""engine/process: real children, stopped for sure on cancel, even when the engine dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ffmpeg
import pytest
from render_helpers import leftovers, settings_for

from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import map_exception
from aura.engine.files import atomic
from aura.engine.tools.ffmpeg import ffmpeg_argv, run_ffmpeg
from aura.engine.tools.process import ProcessFailed, ProgramNotFound, _spawned_argv, run_process


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


async def start_and_cancel(settings: Settings, script: str) -> list[int]:
    """Run `sh -c script` (which prints pids), cancel it once the pids are printed."""
    pids: list[int] = []
    ready = asyncio.Event()

    async def on_line(line: str) -> None:
        pids.extend(int(p) for p in line.split())
        ready.set()

    task = asyncio.create_task(run_process(["sh", "-c", script], settings, on_stdout_line=on_line))
    await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return pids


async def test_collects_stdout_and_succeeds(tmp_path: Path) -> None:
    result = await run_process(["sh", "-c", "echo hello; echo note >&2"], settings_for(tmp_path))
    assert result.stdout == b"hello\n"
    assert result.stderr_tail == "note"


async def test_runs_at_the_configured_niceness(tmp_path: Path) -> None:
    base = os.nice(0)
    result = await run_process(["nice"], settings_for(tmp_path, process_nice=7))
    assert int(result.stdout) == base + 7


async def test_non_zero_exit_raises_with_a_bounded_stderr_tail(tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 500 ]; do echo line$i >&2; i=$((i+1)); done; exit 3"
    with pytest.raises(ProcessFailed) as caught:
        await run_process(["sh", "-c", script], settings_for(tmp_path))
    assert caught.value.returncode == 3
    assert caught.value.program == "sh"
    assert caught.value.stderr_tail.endswith("line499")
    assert "line0\n" not in caught.value.stderr_tail
    assert len(caught.value.stderr_tail.splitlines()) <= 40


async def test_ffmpeg_on_a_full_device_is_out_of_disk_space(tmp_path: Path) -> None:
    # /dev/full fails every write with ENOSPC, for root too
    argv = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-t", "1"]
    with pytest.raises(ProcessFailed) as caught:
        await run_process([*argv, "-f", "mp4", "-y", "/dev/full"], settings_for(tmp_path))
    info = map_exception(caught.value, step="mux")
    assert info.code == "OutOfDiskSpace", info
    assert "No space left on device" in info.message
    assert info.details["exitCode"] == caught.value.returncode


async def test_a_missing_program_raises_program_not_found(tmp_path: Path) -> None:
    with pytest.raises(ProgramNotFound) as caught:
        await run_process(["aura-no-such-program", "-version"], settings_for(tmp_path))
    assert caught.value.program == "aura-no-such-program"


async def test_cancel_terminates_the_whole_process_group(tmp_path: Path) -> None:
    # The shell starts a grandchild in the same group and reports both pids.
    pids = await start_and_cancel(settings_for(tmp_path), "sleep 60 & echo $$ $!; wait")
    assert len(pids) == 2
    for pid in pids:
        assert wait_until_gone(pid), f"pid {pid} survived the cancel"


async def test_cancel_kills_a_child_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kill_grace_seconds=0.3)
    told = tmp_path / "signals"
    script = f"trap 'echo TERM >> {told}' TERM; echo $$; while :; do sleep 0.05; done"
    started = time.monotonic()
    pids = await start_and_cancel(settings, script)
    assert not alive(pids[0])
    assert told.read_text().split() == ["TERM"]  # asked once, politely, then killed
    assert time.monotonic() - started >= 0.3  # not before the grace


async def test_cancelling_ffmpeg_kills_it_and_leaves_no_temp_file(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    source = ffmpeg.input("testsrc2=s=320x240:r=25:d=600", f="lavfi")
    progressed = asyncio.Event()

    async def on_progress(pct: float, eta: float | None) -> None:
        progressed.set()

    async def render() -> None:
        async with atomic.produce(folder / "long.mp4") as temp:
            argv = ffmpeg_argv(source.output(str(temp), vcodec="libx264"), settings)
            await run_ffmpeg(argv, settings, duration_seconds=600, on_progress=on_progress)

    task = asyncio.create_task(render())
    await progressed.wait()
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_ffmpeg_child(int(p))]
    assert children, "ffmpeg is not running"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for pid in children:
        assert not alive(pid)
    assert list(folder.iterdir()) == []
    assert leftovers(tmp_path) == []


def _is_ffmpeg_child(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "(ffmpeg)" in stat and int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


_ORPHAN_SCRIPT = """
import asyncio, sys
from pathlib import Path
from aura.engine.tools.process import run_process
from aura.engine.config.settings import Settings

async def main():
    async def on_line(line):
        print(line, flush=True)
    await run_process(["sh", "-c", "echo $$; exec sleep 60"], Settings(), on_stdout_line=on_line)

asyncio.run(main())
"""


def test_the_child_dies_when_the_engine_is_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True
    ) as engine:
        assert engine.stdout is not None
        child = int(engine.stdout.readline())
        assert alive(child)
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    assert wait_until_gone(child), "the child outlived the SIGKILLed engine"


async def test_an_endless_stderr_line_is_cut_to_the_tail(tmp_path: Path) -> None:
    script = "head -c 300000 /dev/zero | tr '\\0' x >&2; printf END >&2; exit 2"
    with pytest.raises(ProcessFailed) as caught:
        await run_process(["sh", "-c", script], settings_for(tmp_path))
    assert caught.value.stderr_tail.endswith("xEND")
    assert len(caught.value.stderr_tail) <= 4000


_forks_seen: list[int] = []
os.register_at_fork(before=lambda: _forks_seen.append(1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setpriv is util-linux's")
async def test_a_child_starts_without_forking_the_engine(tmp_path: Path) -> None:
    # A `preexec_fn` makes Python fork the whole engine (its at-fork hooks run) and wait on the
    # loop's thread for the child's Python code, stalling the server's streams meanwhile.
    before = len(_forks_seen)
    result = await run_process(["nice"], settings_for(tmp_path, process_nice=3))
    assert int(result.stdout) == os.nice(0) + 3  # niced all the same
    assert len(_forks_seen) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setpriv is util-linux's")
def test_a_child_whose_engine_died_before_its_death_signal_was_set_exits(tmp_path: Path) -> None:
    # The guard runs after setpriv set the death signal: started from another parent (as when
    # the engine died before it), it runs nothing.
    marker = tmp_path / "ran"
    argv = _spawned_argv(["touch", str(marker)], 0)
    assert argv is not None
    other_parent = subprocess.run(["sh", "-c", '"$@"; exit $?', "sh", *argv], check=False)
    assert other_parent.returncode == 1
    assert not marker.exists()
    subprocess.run(argv, check=True)  # from the engine itself, it runs
    assert marker.exists()
