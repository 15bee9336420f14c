"""Media facts: ffprobe a file, hash it, and describe it as an Artifact or the job's Output.

The runner builds JobSucceeded's output with `probe_output(path, settings) -> Output`
(duration from ffprobe, size, sha256) from the mux step's artifact named "video".
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from aura.engine.config.settings import Settings
from aura.engine.tools.process import run_process
from aura.projections.events import Artifact, Output

__all__ = [
    "MediaRejected",
    "Probe",
    "Stream",
    "accept_media",
    "make_artifact",
    "probe",
    "probe_duration",
    "probe_output",
    "sha256_file",
]

_CHUNK = 1 << 20


class Stream(msgspec.Struct, frozen=True):
    """One stream as ffprobe reports it (only the fields we use)."""

    codec_type: str = ""
    codec_name: str = ""
    width: int | None = None
    height: int | None = None


class _Format(msgspec.Struct, frozen=True):
    duration: str | None = None
    format_name: str = ""


class Probe(msgspec.Struct, frozen=True):
    """ffprobe's `-show_format -show_streams` answer."""

    streams: tuple[Stream, ...] = ()
    format: _Format = _Format()

    @property
    def duration(self) -> float:
        """Seconds, or 0.0 when ffprobe does not know."""
        try:
            return float(self.format.duration or 0.0)
        except ValueError:
            return 0.0

    def of_type(self, codec_type: str) -> list[Stream]:
        return [s for s in self.streams if s.codec_type == codec_type]


_PROBE_DECODER = msgspec.json.Decoder(Probe)


class MediaRejected(Exception):
    """ffprobe read the file but it lacks what was expected (a stream, a duration)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


async def probe(path: Path, settings: Settings) -> Probe:
    """ffprobe `path`; raises ProcessFailed when ffprobe cannot read it."""
    argv = [
        settings.ffprobe_path,
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        str(path),
    ]
    result = await run_process(argv, settings)
    return _PROBE_DECODER.decode(result.stdout)


async def probe_duration(path: Path, settings: Settings) -> float:
    """The duration of `path` in seconds, per ffprobe."""
    return (await probe(path, settings)).duration


def accept_media(
    settings: Settings, *, needs: tuple[str, ...] = (), min_duration: float = 0.01
) -> Callable[[Path], Awaitable[None]]:
    """An `atomic.produce` acceptor: ffprobe must read the file, find `needs` and a duration."""

    async def accept(path: Path) -> None:
        info = await probe(path, settings)
        for codec_type in needs:
            if not info.of_type(codec_type):
                raise MediaRejected(path, f"no {codec_type} stream")
        if info.duration < min_duration:
            raise MediaRejected(path, f"duration {info.duration:.3f} s is too short")

    return accept


def _sha256_sync(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, hashed off the event loop."""
    return await asyncio.to_thread(_sha256_sync, path)


def _describe(path: Path) -> tuple[str, int, str]:
    return str(path.resolve()), path.stat().st_size, _sha256_sync(path)


async def make_artifact(name: str, path: Path) -> Artifact:
    """An Artifact for a finished file: absolute path, size and sha256 (off the event loop)."""
    resolved, size, digest = await asyncio.to_thread(_describe, path)
    return Artifact(name=name, path=resolved, size_bytes=size, sha256=digest)


async def probe_output(path: Path, settings: Settings) -> Output:
    """The job's Output for the finished video: path, size, duration (ffprobe) and sha256."""
    info, (resolved, size, digest) = await asyncio.gather(
        probe(path, settings), asyncio.to_thread(_describe, path)
    )
    return Output(
        video_path=resolved,
        size_bytes=size,
        duration_seconds=round(info.duration, 3),
        sha256=digest,
    )
