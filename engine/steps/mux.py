"""Step `mux`: b-roll + narration + subtitles -> the final H.264/AAC MP4 (faststart).

Subtitles are burned into the picture, carried as a `mov_text` stream, or both
(`options.subtitles`). The artifact named `video` is the job's output.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ffmpeg

from aura.engine.files import atomic
from aura.engine.run.context import StepContext
from aura.engine.steps.spec import QUALITY, frame_size, input_path
from aura.engine.steps.subtitles import for_burning, for_soft
from aura.engine.tools import gpu
from aura.engine.tools.ffmpeg import ffmpeg_argv, output_options, run_ffmpeg
from aura.engine.tools.media import accept_media, make_artifact, probe_duration
from aura.projections.events import Artifact

__all__ = ["VIDEO_FILE", "mux", "subtitle_style"]

VIDEO_FILE = "video.mp4"
#: the subtitles as the burn-in filter and the mov_text encoder read them (see subtitles.py);
#: the subtitles step's own SRT stays as written, for players that take a sidecar file
BURN_FILE = "subtitles.burn.srt"
SOFT_FILE = "subtitles.soft.srt"
#: libass sizes text in units of a 288-row frame whatever the video's height: these are for
#: 720 rows (16:9), and a taller frame (9:16, 1280 rows) gets them scaled down to the same pixels
FONT_SIZE, MARGIN_V, STYLED_ROWS = 20, 28, 720


def subtitle_style(aspect: str) -> str:
    """The burned subtitles' look: about 50 px text, whatever the frame's orientation."""
    scale = STYLED_ROWS / frame_size(aspect)[1]
    return (
        f"FontName=DejaVu Sans,FontSize={round(FONT_SIZE * scale)},Outline=2,Shadow=0,"
        f"MarginV={round(MARGIN_V * scale)}"
    )


async def mux(ctx: StepContext) -> list[Artifact]:
    """Encode the final video; artifact: `video`."""
    duration = await probe_duration(input_path(ctx, "narration"), ctx.settings)
    nvenc = await asyncio.to_thread(gpu.use_nvenc, ctx.options.encoder)  # NVML may be slow
    video = ctx.work_dir / VIDEO_FILE

    async def on_progress(pct: float, eta: float | None) -> None:
        await ctx.progress(pct, "encoding the video", eta)

    plain = await asyncio.to_thread(input_path(ctx, "subtitles").read_text, encoding="utf-8")
    if ctx.options.subtitles in ("burned", "both"):
        await asyncio.to_thread(atomic.write_text, ctx.work_dir / BURN_FILE, for_burning(plain))
    needs: tuple[str, ...] = ("video", "audio")
    if ctx.options.subtitles in ("soft", "both"):
        await asyncio.to_thread(atomic.write_text, ctx.work_dir / SOFT_FILE, for_soft(plain))
        needs += ("subtitle",)
    async with atomic.produce(video, accept=accept_media(ctx.settings, needs=needs)) as temp:
        argv = ffmpeg_argv(_graph(ctx, duration, str(temp), nvenc), ctx.settings)
        await run_ffmpeg(
            argv, ctx.settings, duration_seconds=duration, on_progress=on_progress, cwd=ctx.work_dir
        )
    await ctx.progress(100.0, "video ready", 0.0)
    return [await make_artifact("video", video)]


def _encoder_options(ctx: StepContext, nvenc: bool) -> dict[str, Any]:
    quality = QUALITY[ctx.options.quality]
    if nvenc:
        return {"vcodec": "h264_nvenc", "preset": quality.nvenc_preset, "cq": quality.crf}
    return {"vcodec": "libx264", "preset": quality.x264_preset, "crf": quality.crf}


def _graph(ctx: StepContext, duration: float, out: str, nvenc: bool) -> object:
    """Inputs, the optional burn-in filter and the output options."""
    quality = QUALITY[ctx.options.quality]
    picture = ffmpeg.input(str(input_path(ctx, "broll"))).video
    sound = ffmpeg.input(str(input_path(ctx, "narration"))).audio
    streams: list[Any] = [picture, sound]
    options: dict[str, Any] = {}
    if ctx.options.subtitles in ("burned", "both"):
        # A name relative to ffmpeg's cwd (the work folder) keeps filter escaping trivial.
        style = subtitle_style(ctx.brief.aspect)
        streams[0] = picture.filter("subtitles", filename=BURN_FILE, force_style=style)
    if ctx.options.subtitles in ("soft", "both"):
        streams.append(ffmpeg.input(SOFT_FILE)["s"])  # relative to the work folder, as above
        options |= {"scodec": "mov_text", "metadata:s:s:0": "language=eng"}
    return ffmpeg.output(
        *streams,
        out,
        pix_fmt="yuv420p",
        acodec="aac",
        audio_bitrate=quality.audio_bitrate,
        ar=48000,
        movflags="+faststart",
        t=f"{duration:.3f}",
        **_encoder_options(ctx, nvenc),
        **options,
        **output_options(ctx.settings),
    )
