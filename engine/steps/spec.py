"""What the render steps agree on: file and artifact names, frame sizes, quality presets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aura.engine.errors.taxonomy import AuraError
from aura.engine.run.context import StepContext

__all__ = [
    "FONT_FILE",
    "LINE_GAP_SECONDS",
    "QUALITY",
    "TITLE_SECONDS",
    "Quality",
    "frame_size",
    "input_path",
    "line_artifact",
]

#: silence after each narration line, in seconds (the subtitle cues account for it)
LINE_GAP_SECONDS = 0.3
#: how long the title card stays on screen
TITLE_SECONDS = 3.0
#: Debian's fonts-dejavu-core; drawtext falls back to fontconfig when it is missing
FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@dataclass(frozen=True)
class Quality:
    """Encoding choices of one quality level."""

    fps: int
    #: x264 preset and CRF of the final encode
    x264_preset: str
    crf: int
    #: NVENC preset (p1 fastest .. p7 best) and constant quality
    nvenc_preset: str
    audio_bitrate: str
    #: CRF of the intermediate b-roll (encoded ultrafast; the mux encodes it again)
    broll_crf: int


QUALITY: dict[str, Quality] = {
    "draft": Quality(15, "ultrafast", 30, "p1", "96k", 28),
    "balanced": Quality(30, "veryfast", 23, "p4", "128k", 18),
    "high": Quality(30, "medium", 20, "p6", "192k", 16),
}


def frame_size(aspect: str) -> tuple[int, int]:
    """Width and height for an aspect ratio: 1280x720 (16:9) or 720x1280 (9:16)."""
    return (720, 1280) if aspect == "9:16" else (1280, 720)


def line_artifact(index: int) -> str:
    """The artifact name of narration line `index` (0-based): `line-01`, `line-02`, ..."""
    return f"line-{index + 1:02d}"


def input_path(ctx: StepContext, name: str) -> Path:
    """The path of an earlier step's artifact, or Internal if the pipeline skipped it."""
    artifact = ctx.artifacts.get(name)
    if artifact is None:
        raise AuraError.of(
            "Internal",
            f"step {ctx.step} needs the artifact {name!r}, which no earlier step produced",
            step=ctx.step,
            correlation_id=ctx.correlation_id,
        )
    return Path(artifact.path)
