"""Retry-After as the CLI and the speech client read it: both forms, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aura.engine.tools.retry_after import retry_after

NOW = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        (" 120 ", 60.0),  # capped
        ("0", 0.0),
        ("1.5", 1.5),  # not RFC 9110's, but sent by some servers and meant as it reads
        ("9" * 5000, 60.0),  # no overflow, no int() digit limit
        ("Wed, 01 May 2030 12:00:07 GMT", 7.0),
        ("Wed, 01 May 2030 12:00:07 -0000", 7.0),  # no zone: UTC
        ("Wed, 01 May 2030 11:00:00 GMT", 0.0),  # in the past: at once
        ("Wed, 01 May 2031 12:00:00 GMT", 60.0),
    ],
)
def test_both_forms_are_read_and_capped(value: str, expected: float) -> None:
    assert retry_after(value, 60.0, NOW) == expected


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1e3", "inf", "nan", "0x10", "1,5"])
def test_what_cannot_be_read_is_none(value: str | None) -> None:
    assert retry_after(value, 60.0, NOW) is None
