"""The output route's Range decisions (RFC 9110 sections 13.1.5 and 14)."""

from __future__ import annotations

import pytest

from aura.http.ranges import Ranged, decide_range

ETAG = "17f-400"
SIZE = 1024


@pytest.mark.parametrize(
    ("range_header", "expected"),
    [
        (None, Ranged.WHOLE),
        ("bytes=0-9", Ranged.PART),
        ("bytes=100-", Ranged.PART),
        ("bytes=1000-5000", Ranged.PART),  # the end is clipped to the file
        ("bytes=-10", Ranged.PART),
        ("bytes=-5000", Ranged.PART),  # a suffix longer than the file: all of it
        ("BYTES=0-9", Ranged.PART),
        ("bytes=1024-", Ranged.UNSATISFIABLE),
        ("bytes=9999-10000", Ranged.UNSATISFIABLE),
        ("bytes=-0", Ranged.UNSATISFIABLE),
        ("bytes=-", Ranged.UNSATISFIABLE),
        ("bytes=9-0", Ranged.UNSATISFIABLE),
        ("bytes=x-y", Ranged.UNSATISFIABLE),
        ("items=0-9", Ranged.WHOLE),  # a unit the server does not know is ignored
        ("bytes=0-1,5-6", Ranged.WHOLE),  # several ranges: a server may send the whole file
        # positions too long for int() (4,300 digits) or any file: past the end, or all of it
        ("bytes=" + "9" * 5000 + "-", Ranged.UNSATISFIABLE),
        ("bytes=0-" + "9" * 5000, Ranged.WHOLE),
        ("bytes=-" + "9" * 5000, Ranged.WHOLE),
        ("bytes=" + "1" * 19 + "-" + "2" * 19, Ranged.UNSATISFIABLE),
    ],
)
def test_range_forms(range_header: str | None, expected: Ranged) -> None:
    assert decide_range(range_header, None, ETAG, SIZE) is expected


def test_if_range_applies_the_range_only_to_the_same_file() -> None:
    assert decide_range("bytes=0-9", f'"{ETAG}"', ETAG, SIZE) is Ranged.PART
    assert decide_range("bytes=0-9", '"17f-3ff"', ETAG, SIZE) is Ranged.WHOLE
    assert decide_range("bytes=0-9", f'W/"{ETAG}"', ETAG, SIZE) is Ranged.WHOLE
    # a date is FileResponse's to compare with the file's modification time
    date = "Wed, 25 Nov 2026 09:00:00 GMT"
    assert decide_range("bytes=0-9", date, ETAG, SIZE) is Ranged.PART
    # neither a tag nor a date: it matches no file (FileResponse took it for no condition)
    for unreadable in ("Mon, 99 Foo 2026", "yesterday", "17f-400"):
        assert decide_range("bytes=0-9", unreadable, ETAG, SIZE) is Ranged.WHOLE, unreadable


def test_an_empty_file_has_no_suffix() -> None:
    assert decide_range("bytes=-1", None, ETAG, 0) is Ranged.UNSATISFIABLE
    assert decide_range("bytes=0-", None, ETAG, 0) is Ranged.UNSATISFIABLE
