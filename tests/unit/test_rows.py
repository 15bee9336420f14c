"""How `ts` is written: ISO 8601 UTC, always six digits of microseconds and a Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aura.store.rows import format_ts


def test_format_ts_writes_microseconds_and_z_for_every_time_in_turn() -> None:
    base = datetime(2026, 11, 25, 5, 4, 3, tzinfo=UTC)
    times = [base, base + timedelta(microseconds=7), base, base.replace(microsecond=123456)]
    # the same object again (as one commit's events share one), then others: never a stale text
    texts = [format_ts(t) for t in [times[0], times[0], *times[1:]]]
    assert texts == [
        "2026-11-25T05:04:03.000000Z",
        "2026-11-25T05:04:03.000000Z",
        "2026-11-25T05:04:03.000007Z",
        "2026-11-25T05:04:03.000000Z",
        "2026-11-25T05:04:03.123456Z",
    ]
    for t, text in zip([times[0], times[0], *times[1:]], texts, strict=True):
        assert datetime.fromisoformat(text) == t
