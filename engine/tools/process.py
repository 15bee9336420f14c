"""Run one child process (ffmpeg, ffprobe, espeak-ng) from asyncio, and stop it for sure.

INVARIANTS
- The child leads its own process group (start_new_session), so a stop signals the whole group.
- On Linux the child gets PR_SET_PDEATHSIG=SIGKILL: it dies with the engine even when the engine
  is SIGKILLed. (The signal follows the *thread* that forked it: the event loop's thread.)
- The child runs at `settings.process_nice` so the API and live streams stay responsive.
- No Python code runs between fork and exec where util-linux's `setpriv` is found: it sets the
  death signal, `sh` checks the engine is still the parent, `nice` sets the niceness, each by
  exec, so the program keeps the child's pid. Python then spawns with vfork; a `preexec_fn`
  (the fallback) makes it fork the whole server and wait on the loop's thread for the child's
  Python code, which stalled every stream during a render (bench/README.md, sse (d)).
- stderr is drained in its own task into a bounded tail, so a chatty child never stalls on a
  full pipe and memory stays bounded.
- Any exception while the child runs (CancelledError from a cancel or a step timeout included)
  stops the group: SIGTERM, then SIGKILL after `settings.kill_grace_seconds`, then re-raises.

With AURA_TRACE_COMMANDS=FILE every command is appended to FILE as a JSON line (`argv`, `cwd`):
bench/render.py replays them bare from a shell script to measure the engine's overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aura.engine.config.settings import Settings

__all__ = ["TRACE_ENV", "ProcessFailed", "ProcessResult", "ProgramNotFound", "run_process"]

#: lines of stderr kept for error reports
STDERR_TAIL_LINES = 40
#: characters of stderr kept for error reports
STDERR_TAIL_CHARS = 4000
_PR_SET_PDEATHSIG = 1
#: names a file to append every command to (see the module docstring)
TRACE_ENV = "AURA_TRACE_COMMANDS"

LineCallback = Callable[[str], Awaitable[None]]


class ProgramNotFound(FileNotFoundError):
    """The program to run does not exist (or is not executable) at the given path."""

    def __init__(self, program: str) -> None:
        super().__init__(2, f"program not found: {program}", program)
        self.program = program


class ProcessFailed(Exception):
    """The child exited with a non-zero status (or was killed by a signal)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr_tail: str) -> None:
        super().__init__(f"{Path(argv[0]).name} exited with status {returncode}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail

    @property
    def program(self) -> str:
        """The program's base name (`ffmpeg`, `ffprobe`, `espeak-ng`)."""
        return Path(self.argv[0]).name


@dataclass(frozen=True)
class ProcessResult:
    """A finished child: its stdout (unless streamed to a callback) and its stderr tail."""

    returncode: int
    stdout: bytes
    stderr_tail: str


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


# Loaded before any fork: the child must not run the dynamic loader between fork and exec.
_PRCTL = _load_prctl()
#: set the death signal and niceness by exec (see INVARIANTS); None: `preexec_fn` does it
_SETPRIV = shutil.which("setpriv") if _PRCTL is not None else None
_NICE = shutil.which("nice")
#: run by `sh -c` after setpriv set the death signal: $0 is the engine's pid, $@ the command
_GUARD = 'test "$PPID" = "$0" || exit 1; exec '


def _spawned_argv(argv: Sequence[str], nice: int) -> list[str] | None:
    """`argv` behind setpriv, sh and nice (one pid, exec'd in turn), or None where they are
    missing."""
    if _SETPRIV is None or _NICE is None:
        return None
    run = f'{_NICE} -n {nice} "$@"' if nice > 0 else '"$@"'
    guard = [_SETPRIV, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", _GUARD + run]
    return [*guard, str(os.getpid()), *argv]


def _found(program: str, cwd: Path | None, env: dict[str, str] | None) -> bool:
    """Whether exec would find `program` (as the wrapper execs it last, its failure is no
    longer Popen's FileNotFoundError)."""
    if cwd is not None and not cwd.is_dir():
        return True  # Popen reports the missing folder
    if os.sep in program:
        return os.access(Path(cwd or ".", program), os.X_OK)
    return shutil.which(program, path=os.pathsep.join(os.get_exec_path(env))) is not None


def _child_setup(nice: int, parent_pid: int) -> Callable[[], None]:
    """The function run in the child between fork and exec."""

    def setup() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
        if nice > 0:
            os.nice(nice)

    return setup


async def run_process(
    argv: Sequence[str],
    settings: Settings,
    *,
    on_stdout_line: LineCallback | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> ProcessResult:
    """Run `argv` to completion; raise ProcessFailed on a non-zero exit.

    :param on_stdout_line: receives each stdout line (decoded, stripped) as it arrives; without
        it stdout is collected and returned.
    """
    _trace(argv, cwd)
    spawned = _spawned_argv(argv, settings.process_nice)
    if spawned is not None and not _found(argv[0], cwd, env):
        raise ProgramNotFound(argv[0])
    setup = None if spawned is not None else _child_setup(settings.process_nice, os.getpid())
    try:
        proc = await asyncio.create_subprocess_exec(
            *(spawned or argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=setup,
            cwd=cwd,
            env=env,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
        if e.filename is not None and str(e.filename) != str(argv[0]):
            raise  # the working folder, not the program, is missing
        raise ProgramNotFound(argv[0]) from e
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    try:
        stdout = await _communicate(proc, tail, on_stdout_line)
    except BaseException:
        await _stop(proc, settings.kill_grace_seconds)
        raise
    stderr_tail = "\n".join(tail)[-STDERR_TAIL_CHARS:]
    returncode = proc.returncode if proc.returncode is not None else -1
    if returncode != 0:
        raise ProcessFailed(argv, returncode, stderr_tail)
    return ProcessResult(returncode, stdout, stderr_tail)


def _trace(argv: Sequence[str], cwd: Path | None) -> None:
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.write(
                json.dumps({"argv": list(argv), "cwd": None if cwd is None else str(cwd)}) + "\n"
            )


async def _communicate(
    proc: asyncio.subprocess.Process, tail: deque[str], on_line: LineCallback | None
) -> bytes:
    """Drain stdout and stderr concurrently and wait for the exit."""
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(_read_tail(proc.stderr, tail))
    try:
        if on_line is None:
            stdout = await proc.stdout.read()
        else:
            stdout = b""
            async for raw in proc.stdout:
                await on_line(raw.decode("utf-8", "replace").strip())
        await stderr_task
        await proc.wait()
    finally:
        if not stderr_task.done():
            stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stderr_task
    return stdout


async def _read_tail(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    """Keep the last lines of `stream`; chunked reads, so no line length can overrun a limit."""
    pending = b""
    while chunk := await stream.read(1 << 16):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            _keep(tail, line)
        pending = pending[-STDERR_TAIL_CHARS:]
    _keep(tail, pending)


def _keep(tail: deque[str], raw: bytes) -> None:
    line = raw.decode("utf-8", "replace").rstrip()
    if line:
        tail.append(line[-STDERR_TAIL_CHARS:])


async def _stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the child's group, SIGKILL it after `grace` seconds, and reap the child."""
    if proc.returncode is not None:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
    except BaseException:
        # Cancelled again while waiting out the grace period: do not leave the child behind.
        _signal_group(proc.pid, signal.SIGKILL)
        raise


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
