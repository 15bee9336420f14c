"""engine/atomic: results appear whole or not at all; no temp file or zero-byte file survives."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import ffmpeg
import pytest
from render_helpers import file_size, leftovers, listing, settings_for

from aura.engine.files import atomic
from aura.engine.tools.ffmpeg import ffmpeg_argv, run_ffmpeg
from aura.engine.tools.media import MediaRejected, accept_media
from aura.engine.tools.process import ProcessFailed


def test_write_bytes_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic.write_text(target, "first")
    atomic.write_text(target, "second")
    assert target.read_text() == "second"
    assert leftovers(tmp_path) == []


def test_a_zero_byte_result_is_refused_and_the_old_file_kept(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic.write_text(target, "keep me")
    with pytest.raises(atomic.EmptyOutput):
        atomic.write_bytes(target, b"")
    assert target.read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_a_folder_under_a_regular_file_fails_with_enotdir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError) as caught:
        atomic.write_text(blocker / "a.txt", "data")
    assert caught.value.errno == errno.ENOTDIR
    assert leftovers(tmp_path) == []


def test_temp_names_keep_the_suffix_and_are_hidden(tmp_path: Path) -> None:
    temp = atomic.temp_path_for(tmp_path / "video.mp4")
    assert temp.parent == tmp_path
    assert temp.suffix == ".mp4"
    assert temp.name.startswith(".") and atomic.TEMP_MARKER in temp.name


async def test_produce_renames_only_after_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    async with atomic.produce(target) as temp:
        temp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    assert leftovers(tmp_path) == []


async def test_produce_removes_the_temp_file_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        async with atomic.produce(target) as temp:
            temp.write_bytes(b"partial")
            raise RuntimeError("tool crashed")
    assert not target.exists()
    assert leftovers(tmp_path) == []


async def test_produce_refuses_an_empty_or_missing_result(tmp_path: Path) -> None:
    with pytest.raises(atomic.EmptyOutput):
        async with atomic.produce(tmp_path / "a.bin") as temp:
            temp.touch()
    with pytest.raises(atomic.EmptyOutput):
        async with atomic.produce(tmp_path / "b.bin"):
            pass
    assert listing(tmp_path) == []


async def test_produce_removes_the_temp_file_on_cancellation(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def writer() -> None:
        async with atomic.produce(tmp_path / "c.bin") as temp:
            temp.write_bytes(b"half")
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(writer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert listing(tmp_path) == []


async def test_ffprobe_rejection_keeps_the_result_from_appearing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with pytest.raises(ProcessFailed) as caught:
        async with atomic.produce(tmp_path / "x.mp4", accept=accept_media(settings)) as temp:
            temp.write_bytes(b"this is not a video")
    assert caught.value.program == "ffprobe"
    assert listing(tmp_path) == []


async def test_a_video_without_the_needed_stream_is_rejected(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    accept = accept_media(settings, needs=("video", "audio"))
    with pytest.raises(MediaRejected, match="no audio stream"):
        async with atomic.produce(tmp_path / "silent.mp4", accept=accept) as temp:
            source = ffmpeg.input("testsrc2=s=160x120:r=10:d=0.5", f="lavfi")
            argv = ffmpeg_argv(source.output(str(temp), vcodec="libx264"), settings)
            await run_ffmpeg(argv, settings, duration_seconds=0.5)
    assert listing(tmp_path) == []


async def test_an_accepted_video_appears_under_its_name(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    target = tmp_path / "ok.mp4"
    async with atomic.produce(target, accept=accept_media(settings, needs=("video",))) as temp:
        source = ffmpeg.input("testsrc2=s=160x120:r=10:d=0.5", f="lavfi")
        argv = ffmpeg_argv(source.output(str(temp), vcodec="libx264"), settings)
        await run_ffmpeg(argv, settings, duration_seconds=0.5)
    assert file_size(target) > 0
    assert listing(tmp_path) == ["ok.mp4"]
