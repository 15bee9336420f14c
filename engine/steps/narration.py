"""Step `narration`: speak each script line to a WAV, then join them into one narration track.

Lines are spoken by espeak-ng (offline) or an OpenAI-compatible speech API (`brief.tts`).
Each line becomes an artifact (`line-01`, ...) because the subtitles step times its cues from
their real durations; `narration` is the joined track with LINE_GAP_SECONDS after each line.
"""

from __future__ import annotations

import wave
from pathlib import Path

import ffmpeg

from aura.engine.errors.taxonomy import AuraError
from aura.engine.files import atomic
from aura.engine.run.context import StepContext
from aura.engine.steps.spec import LINE_GAP_SECONDS, line_artifact
from aura.engine.tools.ffmpeg import ffmpeg_argv, run_ffmpeg
from aura.engine.tools.media import accept_media, make_artifact, probe_duration
from aura.engine.tools.process import ProcessFailed, run_process
from aura.projections.events import Artifact

__all__ = ["narration"]

#: share of the step's progress spent speaking lines; the join takes the rest
_SPEAK_SHARE = 80.0


async def narration(ctx: StepContext) -> list[Artifact]:
    """Speak every line, then join them; artifacts: `line-NN`... and `narration`."""
    lines = ctx.brief.script
    artifacts: list[Artifact] = []
    for i, text in enumerate(lines):
        name = line_artifact(i)
        path = ctx.work_dir / f"{name}.wav"
        await _speak(ctx, text, path)
        artifacts.append(await make_artifact(name, path))
        await ctx.progress((i + 1) / len(lines) * _SPEAK_SHARE, f"spoke line {i + 1}", None)
    track = ctx.work_dir / "narration.wav"
    await _join(ctx, [Path(a.path) for a in artifacts], track)
    artifacts.append(await make_artifact("narration", track))
    await ctx.progress(100.0, "narration ready", 0.0)
    return artifacts


async def _speak(ctx: StepContext, text: str, path: Path) -> None:
    """One line to a WAV file at `path`, atomically."""
    if ctx.brief.tts == "openai":
        # Imported here: importing aiohttp's client slows the start-up espeak renders never need.
        from aura.engine.tools.openai_tts import synthesize_to_file

        await synthesize_to_file(text, ctx.brief.voice, path, ctx.settings, deadline=ctx.deadline)
        return
    async with atomic.produce(path) as temp:
        argv = [ctx.settings.espeak_path, "-v", ctx.brief.voice, "-w", str(temp), "--", text]
        try:
            await run_process(argv, ctx.settings)
        except ProcessFailed as e:
            if "voice does not exist" in e.stderr_tail:
                raise AuraError.of(
                    "InvalidInput:brief.voice",
                    f"espeak-ng has no voice {ctx.brief.voice!r}",
                    details={"field": "brief.voice"},
                    step=ctx.step,
                    correlation_id=ctx.correlation_id,
                ) from e
            raise


async def _duration(path: Path, ctx: StepContext) -> float:
    """A WAV's duration from its header (no process), or from ffprobe if the header is odd."""
    try:
        with wave.open(str(path), "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
        if 0 < frames < 0x7FFFFFFF and rate > 0:  # streamed WAVs carry a dummy frame count
            return frames / rate
    except (wave.Error, EOFError):
        pass
    return await probe_duration(path, ctx.settings)


async def _join(ctx: StepContext, parts: list[Path], track: Path) -> None:
    """Concatenate the line WAVs, each followed by a short pause, into one WAV."""
    durations = [await _duration(p, ctx) for p in parts]
    total = sum(d + LINE_GAP_SECONDS for d in durations)
    padded = [ffmpeg.input(str(p)).filter("apad", pad_dur=LINE_GAP_SECONDS) for p in parts]
    joined = ffmpeg.concat(*padded, v=0, a=1)

    async def on_progress(pct: float, eta: float | None) -> None:
        share = 100.0 - _SPEAK_SHARE
        await ctx.progress(_SPEAK_SHARE + pct / 100.0 * share, "joining lines", eta)

    async with atomic.produce(track, accept=accept_media(ctx.settings, needs=("audio",))) as temp:
        argv = ffmpeg_argv(joined.output(str(temp), acodec="pcm_s16le"), ctx.settings)
        await run_ffmpeg(argv, ctx.settings, duration_seconds=total, on_progress=on_progress)
