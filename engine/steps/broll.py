"""Step `broll`: the picture, from ffmpeg's generated sources, with a title card (drawtext).

The clip lasts as long as the narration. It is an intermediate (x264 ultrafast, low CRF): the
mux step encodes it again with the subtitles, in the quality the job asks for.
"""

from __future__ import annotations

import asyncio
import textwrap

import ffmpeg

from aura.engine.files import atomic
from aura.engine.run.context import StepContext
from aura.engine.steps.spec import FONT_FILE, QUALITY, TITLE_SECONDS, frame_size, input_path
from aura.engine.tools.ffmpeg import ffmpeg_argv, output_options, run_ffmpeg
from aura.engine.tools.media import accept_media, make_artifact, probe_duration
from aura.projections.events import Artifact

__all__ = ["broll", "title_layout"]

TITLE_FILE = "title.txt"
#: a wide glyph of the bold title font, in ems (a conservative average: drawtext cannot wrap)
_GLYPH_EMS = 0.7


async def broll(ctx: StepContext) -> list[Artifact]:
    """Render the b-roll clip; artifact: `broll`."""
    duration = await probe_duration(input_path(ctx, "narration"), ctx.settings)
    # drawtext reads the title from a file with expansion off: no escaping of user text.
    text, _ = title_layout(ctx.brief.title, *frame_size(ctx.brief.aspect))
    await asyncio.to_thread(atomic.write_text, ctx.work_dir / TITLE_FILE, text)
    clip = ctx.work_dir / "broll.mp4"

    async def on_progress(pct: float, eta: float | None) -> None:
        await ctx.progress(pct, "rendering b-roll", eta)

    accept = accept_media(ctx.settings, needs=("video",))
    async with atomic.produce(clip, accept=accept) as temp:
        argv = ffmpeg_argv(_graph(ctx, duration, str(temp)), ctx.settings)
        await run_ffmpeg(
            argv, ctx.settings, duration_seconds=duration, on_progress=on_progress, cwd=ctx.work_dir
        )
    await ctx.progress(100.0, "b-roll ready", 0.0)
    return [await make_artifact("broll", clip)]


def title_layout(title: str, width: int, height: int) -> tuple[str, int]:
    """The title wrapped into lines that fit 90% of the frame's width, and its font size."""
    size = max(min(height // 10, width // 14), 24)
    chars = max(int(width * 0.9 / (size * _GLYPH_EMS)), 8)
    return "\n".join(textwrap.wrap(title, chars)) or title, size


def _graph(ctx: StepContext, duration: float, out: str) -> object:
    """Moving gradients with the title drawn over the first seconds, fading out."""
    width, height = frame_size(ctx.brief.aspect)
    quality = QUALITY[ctx.options.quality]
    source = ffmpeg.input(
        f"gradients=s={width}x{height}:r={quality.fps}:d={duration:.3f}:speed=0.015:n=3",
        f="lavfi",
    )
    font = {"fontfile": str(FONT_FILE)} if FONT_FILE.exists() else {}
    fade = f"if(lt(t,{TITLE_SECONDS - 0.5}),1,max(0,({TITLE_SECONDS}-t)/0.5))"
    titled = source.drawtext(
        textfile=TITLE_FILE,
        expansion="none",
        fontsize=title_layout(ctx.brief.title, width, height)[1],
        fontcolor="white",
        borderw=3,
        bordercolor="black@0.6",
        x="(w-text_w)/2",
        y="(h-text_h)/2",
        alpha=fade,
        enable=f"lt(t,{TITLE_SECONDS})",
        escape_text=False,
        **font,
    )
    return titled.output(
        out,
        vcodec="libx264",
        preset="ultrafast",
        crf=quality.broll_crf,
        pix_fmt="yuv420p",
        **output_options(ctx.settings),
    )
