"""The process half of the workers test's "no step ran twice at once": the workers' tool
processes sampled while the jobs run, which job's output each works on (from its command
line), and which samples show two workers on the same one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import psutil  # type: ignore[import-untyped]

from aura.engine.files.atomic import TEMP_MARKER

__all__ = [
    "Sample",
    "ToolSeen",
    "overlaps",
    "runners",
    "sample_tools",
    "tool_target",
    "watching_tools",
]

#: seconds between two samples of the workers' tool processes
SAMPLE_EVERY = 0.05


class ToolSeen(NamedTuple):
    """A tool process in one sample of the workers' processes."""

    worker: int  # the pid of the worker it runs under
    pid: int
    job: str
    output: str  # the artifact it writes (for ffprobe, reads): `line-01`, `broll`, `video`, ...
    live: bool  # neither a zombie nor under a worker that is dead or dying


class Sample(NamedTuple):
    at: float  # time.monotonic() when it was taken
    tools: tuple[ToolSeen, ...]


def tool_target(cmdline: Sequence[str], artifacts: Path) -> tuple[str, str] | None:
    """(job id, artifact name) of the last argument naming a file in a job's folder under
    `artifacts` (ffmpeg's output, espeak-ng's `-w` file, ffprobe's input); a temp file
    (engine/files/atomic.py) gives the name of the file it becomes."""
    for arg in reversed(cmdline):
        path = Path(arg)
        if path.is_absolute() and path.parent.parent == artifacts:
            temp = TEMP_MARKER in path.name
            name = path.name.removeprefix(".").partition(TEMP_MARKER)[0] if temp else path.stem
            return path.parent.name, name
    return None


def overlaps(samples: Iterable[Sample]) -> list[tuple[ToolSeen, ToolSeen]]:
    """Pairs of live tools seen at the same instant, under two different workers, on the same
    output of the same job: the step ran twice at once. Tools of a dead worker are ignored
    (their death signal is on its way), as are several tools of one worker (ffprobe after its
    ffmpeg)."""
    found = []
    for sample in samples:
        first: dict[tuple[str, str], ToolSeen] = {}
        for tool in sample.tools:
            if tool.live:
                seen = first.setdefault((tool.job, tool.output), tool)
                if seen.worker != tool.worker:
                    found.append((seen, tool))
    return found


def runners(samples: Iterable[Sample], since: float = 0.0) -> dict[str, set[int]]:
    """Per job, the workers (pids) whose tools for it were seen live from `since` on."""
    found: dict[str, set[int]] = {}
    for sample in samples:
        if sample.at >= since:
            for tool in sample.tools:
                if tool.live:
                    found.setdefault(tool.job, set()).add(tool.worker)
    return found


def sample_tools(workers: Collection[int], artifacts: Path) -> Sample:
    """The tools working in `artifacts` now under the `workers` (this process's children), in
    one scan of the process table."""
    at = time.monotonic()
    tools = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            with proc.oneshot():
                worker, cmdline, status = proc.ppid(), proc.cmdline(), proc.status()
            target = tool_target(cmdline, artifacts) if worker in workers else None
            if target is not None:
                live = status != psutil.STATUS_ZOMBIE and _alive(worker)
                tools.append(ToolSeen(worker, proc.pid, *target, live))
    return Sample(at, tuple(tools))


def _alive(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    return False


@contextlib.contextmanager
def watching_tools(workers: Collection[int], artifacts: Path) -> Iterator[list[Sample]]:
    """Samples of the workers' tools, taken every SAMPLE_EVERY seconds on a thread until the
    end of the block."""
    samples: list[Sample] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def watch() -> None:
        try:
            while not stop.wait(SAMPLE_EVERY):
                samples.append(sample_tools(workers, artifacts))
        except BaseException as exc:  # told at the end of the block
            failed.append(exc)

    thread = threading.Thread(target=watch, name="tool-watch", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
    assert not failed, failed
