"""The SRT the burn-in filter reads: braces escaped (libass override blocks), nothing else."""

from __future__ import annotations

from aura.engine.steps.subtitles import build_srt, for_burning


def test_braces_are_escaped_for_burning_and_nothing_else_changes() -> None:
    srt = build_srt(["Set {x} to one.", "Plain <b>text</b>: 100%"], [1.0, 1.0])
    assert for_burning(srt) == srt.replace("{x}", "\\{x\\}")
