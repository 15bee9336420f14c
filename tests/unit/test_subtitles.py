"""Subtitles as ffmpeg reads and burns them: lines as written, one size in both orientations."""

from __future__ import annotations

from aura.engine.steps.mux import subtitle_style
from aura.engine.steps.subtitles import WORD_JOINER, build_srt, for_burning, for_soft

LINES = ["Set {x} to one.", r"C:\Users\Nina", "<b>a</b> < b", "Plain: 100%"]


def test_a_line_that_reads_as_a_timing_line_stays_in_its_cue() -> None:
    lines = ["first", "00:00:00,000 --> 00:00:09,000"]
    srt = build_srt(lines, [1.0, 1.0])
    assert srt.count("-->") == 2  # the two cues' own timing lines, and no third
    assert srt.replace(WORD_JOINER, "").count("-->") == 3  # shown as written


def test_markup_is_broken_by_invisible_joiners_and_nothing_else_changes() -> None:
    srt = build_srt(LINES, [1.0] * len(LINES))
    soft = for_soft(srt)
    burned = for_burning(srt)
    assert soft.replace(WORD_JOINER, "") == srt
    assert burned.replace(WORD_JOINER, "").replace("\\{", "{").replace("\\}", "}") == srt
    for text in (soft, burned):
        assert "\\N" not in text and "\\U" not in text and "<b>" not in text and "</" not in text
    assert "{\\" not in soft and "{x}" in soft.replace(WORD_JOINER, "")
    assert "\\{" + WORD_JOINER + "x\\}" in burned  # libass's own escape for a brace


def test_burned_text_has_the_same_pixel_size_in_both_orientations() -> None:
    wide, tall = subtitle_style("16:9"), subtitle_style("9:16")
    assert "FontSize=20," in wide and "MarginV=28" in wide  # 720 rows: 50 px text
    assert "FontSize=11," in tall and "MarginV=16" in tall  # 1280 rows: the same 50 px
