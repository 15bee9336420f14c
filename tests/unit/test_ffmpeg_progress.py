"""ffmpeg commands: `-progress` output -> percent and ETA; global and thread options."""

from __future__ import annotations

import ffmpeg

from aura.engine.config.settings import Settings
from aura.engine.tools.ffmpeg import Progress, ProgressParser, ffmpeg_argv, output_options


def feed_block(parser: ProgressParser, **values: str) -> Progress | None:
    result = None
    for key, value in values.items():
        result = parser.feed(f"{key}={value}\n")
    return result


def test_percent_and_eta_come_from_out_time_and_speed() -> None:
    parser = ProgressParser(10.0)
    tick = feed_block(parser, frame="50", out_time_us="2500000", speed="2.5x", progress="continue")
    assert tick is not None
    assert tick.pct == 25.0
    assert tick.eta_seconds == 3.0  # 7.5 s of output left at 2.5x
    assert not tick.done


def test_speed_not_available_gives_no_eta() -> None:
    parser = ProgressParser(4.0)
    tick = feed_block(parser, out_time_us="1000000", speed="N/A", progress="continue")
    assert tick is not None and tick.pct == 25.0 and tick.eta_seconds is None


def test_out_time_ms_is_microseconds_too() -> None:
    parser = ProgressParser(2.0)
    tick = feed_block(parser, out_time_ms="500000", progress="continue")
    assert tick is not None and tick.pct == 25.0


def test_negative_or_unknown_out_time_counts_as_zero() -> None:
    parser = ProgressParser(2.0)
    assert feed_block(parser, out_time_us="-5000", progress="continue") == Progress(
        0.0, None, False
    )
    assert feed_block(parser, out_time_us="N/A", progress="continue") == Progress(0.0, None, False)


def test_percent_stays_below_100_until_the_end_block() -> None:
    parser = ProgressParser(1.0)
    tick = feed_block(parser, out_time_us="5000000", speed="1x", progress="continue")
    assert tick is not None and tick.pct < 100.0
    end = feed_block(parser, progress="end")
    assert end == Progress(100.0, 0.0, True)


def test_lines_inside_a_block_report_nothing() -> None:
    parser = ProgressParser(1.0)
    assert parser.feed("out_time_us=1") is None
    assert parser.feed("garbage without equals") is None
    assert parser.feed("") is None


def test_percent_rises_over_a_run_of_blocks() -> None:
    parser = ProgressParser(3.0)
    ticks = [
        feed_block(parser, out_time_us=str(us), speed="1.2x", progress="continue")
        for us in (0, 1_000_000, 2_000_000)
    ]
    pcts = [t.pct for t in ticks if t is not None]
    assert pcts == sorted(pcts) and len(pcts) == 3


def test_commands_carry_progress_thread_and_overwrite_options() -> None:
    settings = Settings(ffmpeg_path="/opt/ffmpeg", ffmpeg_threads=3)
    stream = ffmpeg.input("in.wav").output("out.wav", **output_options(settings))
    argv = ffmpeg_argv(stream, settings)
    assert argv[0] == "/opt/ffmpeg"
    joined = " ".join(argv)
    assert "-progress pipe:1 -nostats" in joined
    assert "-filter_threads 3" in joined and "-threads 3 out.wav" in joined
    assert argv[-1] == "-y"


def test_zero_threads_leaves_the_choice_to_ffmpeg() -> None:
    settings = Settings(ffmpeg_threads=0)
    argv = ffmpeg_argv(ffmpeg.input("a").output("b", **output_options(settings)), settings)
    assert "-threads" not in argv and "-filter_threads" not in argv
