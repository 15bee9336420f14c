"""Step `subtitles`: an SRT whose cues follow the real narration (line durations from ffprobe)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from aura.engine.files import atomic
from aura.engine.run.context import StepContext
from aura.engine.steps.spec import LINE_GAP_SECONDS, input_path, line_artifact
from aura.engine.tools.media import make_artifact, probe_duration
from aura.projections.events import Artifact

__all__ = ["build_srt", "cue_times", "srt_time", "subtitles"]


async def subtitles(ctx: StepContext) -> list[Artifact]:
    """Write subtitles.srt, one cue per script line; artifact: `subtitles`."""
    lines = ctx.brief.script
    paths = [input_path(ctx, line_artifact(i)) for i in range(len(lines))]
    durations = await asyncio.gather(*(probe_duration(p, ctx.settings) for p in paths))
    await ctx.progress(60.0, "measured the narration", None)
    srt = ctx.work_dir / "subtitles.srt"
    await asyncio.to_thread(atomic.write_text, srt, build_srt(lines, durations))
    await ctx.progress(100.0, "subtitles ready", 0.0)
    return [await make_artifact("subtitles", Path(srt))]


def cue_times(
    durations: Sequence[float], gap: float = LINE_GAP_SECONDS
) -> list[tuple[float, float]]:
    """(start, end) of each line, when each line is followed by `gap` seconds of silence."""
    cues = []
    start = 0.0
    for duration in durations:
        cues.append((start, start + duration))
        start += duration + gap
    return cues


def srt_time(seconds: float) -> str:
    """`HH:MM:SS,mmm`, as SRT writes a time."""
    ms = round(max(seconds, 0.0) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{ms:03d}"


#: invisible, and it ends the markup ffmpeg's SRT reader and libass would otherwise see
WORD_JOINER = "\u2060"


def _unmarked(srt: str) -> str:
    """A backslash or `<` followed by a word joiner: `\\N`, `\\h`, `\\b1` or `<b>` in a line
    is then text, not markup (ffmpeg reads an SRT's HTML-like tags and ASS escapes)."""
    return srt.replace("\\", "\\" + WORD_JOINER).replace("<", "<" + WORD_JOINER)


def for_burning(srt: str) -> str:
    """The SRT as the burn-in filter must read it to draw each line as written: markup broken
    (`_unmarked`), and braces escaped for libass, which reads `{...}` as an override block and
    draws nothing of it (a word joiner after `{` keeps ffmpeg from reading `{\\...}` too)."""
    return _unmarked(srt).replace("{", "\\{" + WORD_JOINER).replace("}", "\\}")


def for_soft(srt: str) -> str:
    """The SRT as ffmpeg must read it into the `mov_text` stream so that players show each line
    as written: markup broken, and `{\\...}` (an override ffmpeg would drop) broken too."""
    return _unmarked(srt).replace("{", "{" + WORD_JOINER)


def build_srt(lines: Sequence[str], durations: Sequence[float]) -> str:
    """The SRT text: numbered cues, one per line, timed by `cue_times`."""
    blocks = []
    for n, (text, (start, end)) in enumerate(zip(lines, cue_times(durations), strict=True), 1):
        # A blank line would end the cue early, and a line with `-->` in it, read as a timing
        # line, would start another; SRT has no escape for either (a word joiner breaks the
        # arrow, invisibly).
        body = "\n".join(part for part in text.splitlines() if part.strip()) or " "
        body = body.replace("-->", "--" + WORD_JOINER + ">")
        blocks.append(f"{n}\n{srt_time(start)} --> {srt_time(end)}\n{body}\n")
    return "\n".join(blocks)
