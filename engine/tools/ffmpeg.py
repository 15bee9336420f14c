"""ffmpeg commands: built with ffmpeg-python, run with engine/process, progress from `-progress`.

ffmpeg prints `key=value` blocks on stdout (`-progress pipe:1 -nostats`), each ending in
`progress=continue` or `progress=end`. `out_time_us` (and, despite its name, `out_time_ms`) is
microseconds of output written; `speed` is e.g. `1.52x` or `N/A`. Against the output's known
duration they give a percent and, once the speed is known, an ETA.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aura.engine.config.settings import Settings
from aura.engine.tools.process import ProcessFailed, ProcessResult, run_process

__all__ = [
    "Progress",
    "ProgressParser",
    "ffmpeg_argv",
    "output_options",
    "run_ffmpeg",
]

#: (percent 0-100, eta seconds or None)
ProgressSink = Callable[[float, float | None], Awaitable[None]]

#: ffmpeg's words for an output it could not finish, whatever its exit status
_UNFINISHED_OUTPUT = ("Error writing trailer of ", "Error closing file ")
_GLOBAL_ARGS = ("-hide_banner", "-nostdin", "-loglevel", "error", "-progress", "pipe:1", "-nostats")


@dataclass(frozen=True)
class Progress:
    """One `-progress` block: how far the output is, in percent, and the seconds left."""

    pct: float
    eta_seconds: float | None
    done: bool


class ProgressParser:
    """Turns ffmpeg `-progress` lines into Progress values against a known duration."""

    def __init__(self, duration_seconds: float) -> None:
        self.duration = max(duration_seconds, 1e-6)
        self._out_time: float | None = None
        self._speed: float | None = None

    def feed(self, line: str) -> Progress | None:
        """Take one line; return a Progress at the end of each block, else None."""
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key in ("out_time_us", "out_time_ms"):
            self._out_time = _float(value, scale=1e-6) if value.strip() != "N/A" else None
        elif key == "speed":
            self._speed = _float(value.rstrip("x"))
        elif key == "progress":
            return self._block(done=value.strip() == "end")
        return None

    def _block(self, *, done: bool) -> Progress:
        if done:
            return Progress(100.0, 0.0, True)
        out_time = max(self._out_time or 0.0, 0.0)
        pct = min(out_time / self.duration * 100.0, 99.9)
        eta = None
        if self._speed and self._speed > 0:
            eta = max(self.duration - out_time, 0.0) / self._speed
        return Progress(pct, eta, False)


def _float(text: str, *, scale: float = 1.0) -> float | None:
    try:
        return float(text) * scale
    except ValueError:
        return None


def ffmpeg_argv(stream: Any, settings: Settings, *, extra: Sequence[str] = ()) -> list[str]:
    """The argument list of an ffmpeg-python output `stream`, with our global options.

    Progress goes to stdout, logging is errors only (the tail of stderr is the error report),
    and filter threads come from the settings (encoder threads: `output_options`).
    """
    threads: tuple[str, ...] = ()
    if settings.ffmpeg_threads > 0:
        n = str(settings.ffmpeg_threads)
        threads = ("-filter_threads", n, "-filter_complex_threads", n)
    args: list[str] = (
        stream.global_args(*_GLOBAL_ARGS, *threads, *extra)
        .overwrite_output()
        .compile(cmd=settings.ffmpeg_path)
    )
    return args


def output_options(settings: Settings) -> dict[str, Any]:
    """Per-output options every encode gets: the encoder thread count from the settings."""
    return {"threads": settings.ffmpeg_threads} if settings.ffmpeg_threads > 0 else {}


async def run_ffmpeg(
    argv: Sequence[str],
    settings: Settings,
    *,
    duration_seconds: float,
    on_progress: ProgressSink | None = None,
    cwd: Path | None = None,
) -> ProcessResult:
    """Run ffmpeg, reporting percent and ETA from its `-progress` output as it goes."""
    parser = ProgressParser(duration_seconds)

    async def on_line(line: str) -> None:
        tick = parser.feed(line)
        if tick is not None and on_progress is not None:
            await on_progress(tick.pct, tick.eta_seconds)

    result = await run_process(argv, settings, on_stdout_line=on_line, cwd=cwd)
    if any(line.startswith(_UNFINISHED_OUTPUT) for line in result.stderr_tail.splitlines()):
        # ffmpeg 5.1 exits 0 when it cannot write its output's end (a full disk): the file is
        # cut short, and its error ("No space left on device") is what the step failed on
        raise ProcessFailed(argv, result.returncode, result.stderr_tail)
    return result
