"""The render steps, called in order as the runner does, with real espeak-ng, ffmpeg and ffprobe."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from pathlib import Path

import pytest
from render_helpers import (
    DRAFT,
    Recorder,
    file_size,
    leftovers,
    make_ctx,
    read_text,
    run_steps,
    settings_for,
)

from aura.engine.config.inputs import Brief, Options
from aura.engine.errors.taxonomy import AuraError
from aura.engine.run.pipeline import OUTPUT_ARTIFACT, PIPELINE
from aura.engine.steps.mux import BURN_FILE, mux
from aura.engine.steps.narration import narration
from aura.engine.steps.subtitles import WORD_JOINER, build_srt
from aura.engine.tools.media import probe, probe_duration, probe_output


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_short_brief_renders_an_h264_aac_mp4_with_rising_progress(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    recorder = Recorder()
    artifacts = await run_steps(settings, recorder=recorder)

    video = Path(artifacts[OUTPUT_ARTIFACT].path)
    info = await probe(video, settings)
    [picture] = info.of_type("video")
    assert (picture.codec_name, picture.width, picture.height) == ("h264", 1280, 720)
    assert [s.codec_name for s in info.of_type("audio")] == ["aac"]
    assert [s.codec_name for s in info.of_type("subtitle")] == ["mov_text"]
    narration_seconds = await probe_duration(Path(artifacts["narration"].path), settings)
    assert abs(info.duration - narration_seconds) <= 0.1 * narration_seconds

    for artifact in artifacts.values():
        path = Path(artifact.path)
        assert file_size(path) == artifact.size_bytes > 0
        assert _sha256(path) == artifact.sha256
    assert set(artifacts) == {"line-01", "line-02", "narration", "broll", "subtitles", "video"}
    assert leftovers(tmp_path) == []

    output = await probe_output(video, settings)
    assert output.video_path == str(video)
    assert output.sha256 == artifacts["video"].sha256
    assert output.duration_seconds == pytest.approx(info.duration, abs=0.01)
    _assert_rising_progress(recorder)


def _assert_rising_progress(recorder: Recorder) -> None:
    """Every step reports progress that never goes back and ends at 100; mux reports an ETA."""
    for step in PIPELINE:
        pcts = [pct for name, pct, _, _ in recorder.progress if name == step]
        assert pcts, f"{step} reported no progress"
        assert pcts == sorted(pcts), f"{step} progress went backwards: {pcts}"
        assert pcts[-1] == 100.0
        assert all(0.0 <= p <= 100.0 for p in pcts)
    etas = [eta for name, _, _, eta in recorder.progress if name == "mux" and eta is not None]
    assert etas, "mux reported no ETA from ffmpeg's speed"


async def test_subtitle_cues_follow_the_real_line_durations(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    artifacts = await run_steps(settings, until="subtitles")
    durations = [
        await probe_duration(Path(artifacts[n].path), settings) for n in ("line-01", "line-02")
    ]
    srt = read_text(artifacts["subtitles"].path)
    times = [_seconds(t) for cue in re.findall(r"(\S+) --> (\S+)", srt) for t in cue]
    # each cue spans its line's audio; the next starts after 0.3 s of silence
    first, second = durations
    expected = [0.0, first, first + 0.3, first + 0.3 + second]
    assert times == pytest.approx(expected, abs=0.0011), srt
    # and the narration track is exactly those lines and silences
    track = await probe_duration(Path(artifacts["narration"].path), settings)
    assert track == pytest.approx(first + 0.3 + second + 0.3, abs=0.05)
    assert "One short line." in srt and "And another." in srt


def _seconds(srt_time: str) -> float:
    """`HH:MM:SS,mmm` in seconds, read independently of the code under test."""
    hours, minutes, rest = srt_time.split(":")
    secs, millis = rest.split(",")
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000


async def test_portrait_burned_only_and_soft_only_variants(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    portrait = Brief(title="Tall", script=("Up.",), aspect="9:16")
    artifacts = await run_steps(
        settings,
        brief=portrait,
        options=Options(quality="draft", encoder="x264", subtitles="burned"),
    )
    info = await probe(Path(artifacts["video"].path), settings)
    assert [(s.width, s.height) for s in info.of_type("video")] == [(720, 1280)]
    assert info.of_type("subtitle") == []

    soft = Options(quality="draft", encoder="x264", subtitles="soft")
    ctx = make_ctx(settings, "mux", brief=portrait, options=soft, artifacts=artifacts)
    [video] = await mux(ctx)
    info = await probe(Path(video.path), settings)
    assert [s.codec_name for s in info.of_type("subtitle")] == ["mov_text"]


async def _edge_jumps(clip: Path, width: int, height: int) -> int:
    """The sharpest vertical step in the frame's outer columns at 0.5 s (title shown): text
    crossing the edge makes a jump of ~200; the smooth gradient behind it a few levels."""
    argv = ["ffmpeg", "-v", "error", "-ss", "0.5", "-i", str(clip), "-frames:v", "1"]
    proc = await asyncio.create_subprocess_exec(
        *argv, "-f", "rawvideo", "-pix_fmt", "gray", "-", stdout=asyncio.subprocess.PIPE
    )
    raw, _ = await proc.communicate()
    assert proc.returncode == 0 and len(raw) == width * height
    columns = [[raw[y * width + x] for y in range(height)] for x in (0, 1, width - 2, width - 1)]
    return max(abs(a - b) for column in columns for a, b in itertools.pairwise(column))


@pytest.mark.parametrize(
    ("aspect", "title"),
    [
        ("9:16", "Hello from Aura"),
        ("16:9", "A longer title: every word of it stays inside the frame, on any aspect"),
    ],
)
async def test_the_title_card_stays_inside_the_frame(
    tmp_path: Path, aspect: str, title: str
) -> None:
    settings = settings_for(tmp_path)
    brief = Brief(title=title, script=("Up.",), aspect=aspect)  # type: ignore[arg-type]
    artifacts = await run_steps(settings, brief=brief, until="broll")
    width, height = (720, 1280) if aspect == "9:16" else (1280, 720)
    assert await _edge_jumps(Path(artifacts["broll"].path), width, height) < 40


def test_srt_blocks_are_numbered_and_never_hold_a_blank_line() -> None:
    srt = build_srt(["a\n\nb", "c"], [1.0, 2.0])
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\na\nb\n\n2\n00:00:01,300 --> 00:00:03,300\nc\n"


async def test_an_unknown_espeak_voice_is_invalid_input(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    brief = Brief(title="t", script=("hi",), voice="zz-nope")
    ctx = make_ctx(settings, "narration", brief=brief, options=DRAFT)
    ctx.work_dir.mkdir(parents=True)
    with pytest.raises(AuraError) as caught:
        await narration(ctx)
    assert caught.value.code == "InvalidInput:brief.voice"
    assert leftovers(tmp_path) == []


async def test_markup_in_a_line_is_shown_as_written_burned_and_in_the_soft_stream(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    lines = (
        "Set {x} to one.",
        r"Save {\b1}it{\b0} to C:\Users\Nina\notes.txt",
        "<b>If</b> a < b.",
        "00:00:00,000 --> 00:00:09,000",  # an SRT timing line, as a line of the script
    )
    brief = Brief(title="Markup", script=lines)
    artifacts = await run_steps(settings, brief=brief, options=Options(quality="draft"))
    video = Path(artifacts[OUTPUT_ARTIFACT].path)
    # libass reads `{x}` as an override block and draws nothing: the burn-in copy escapes it.
    burned = await asyncio.to_thread((video.parent / BURN_FILE).read_text)
    assert f"Set \\{{{WORD_JOINER}x\\}} to one." in burned
    soft = await asyncio.create_subprocess_exec(
        settings.ffmpeg_path, "-loglevel", "error", "-i", str(video), "-map", "0:s", "-f", "srt",
        "-", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await soft.communicate()
    shown = out.decode().replace(WORD_JOINER, "")  # what a player shows: the joiners are invisible
    assert all(line in shown for line in lines), shown
