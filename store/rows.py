"""How events sit in the `events` table: the columns read and written, and their decoding."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec

from aura.projections.events import DECODER, Recorded
from aura.store.errors import CorruptEvent

__all__ = [
    "INSERT",
    "SELECT",
    "Row",
    "decode_rows",
    "decode_rows_skipping",
    "format_optional_ts",
    "format_ts",
]

INSERT = (
    "INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
SELECT = "SELECT seq, job_id, version, ts, data FROM events"

#: (seq, job_id, version, ts, data) as SELECT reads it
Row = tuple[int, str, int, str, str]

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError)


def format_ts(ts: datetime) -> str:
    """ISO 8601 UTC with microseconds and a Z, as stored in the `ts` column (of a UTC time)."""
    # One commit's events share one datetime, formatted for the rows and again for each SSE
    # frame: the last one is remembered, compared by identity (the pair holds it, so it is
    # never stale; one tuple, so a thread never sees half of an update).
    global _last_formatted
    last = _last_formatted
    if ts is last[0]:
        return last[1]
    # isoformat, far cheaper than the equivalent strftime; drop its "+00:00".
    text = ts.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    _last_formatted = (ts, text)
    return text


_last_formatted: tuple[datetime | None, str] = (None, "")


def format_optional_ts(ts: datetime | None) -> str | None:
    return None if ts is None else format_ts(ts)


def _decode_row(row: Row) -> Recorded:
    seq, job_id, version, ts, data = row
    try:
        event = DECODER.decode(data)
        return Recorded(seq, job_id, version, datetime.fromisoformat(ts), event)
    except _DECODE_ERRORS as e:
        raise CorruptEvent(seq, str(e)) from e


def decode_rows(rows: list[Row]) -> list[Recorded]:
    """Decode a page of rows; a row that does not decode raises CorruptEvent naming its seq."""
    # One comprehension with no call per row: cheaper than `_decode_row` per row.
    # On a failure, `_decode_row` finds the row and raises the same CorruptEvent it always did.
    decode, parse_ts = DECODER.decode, datetime.fromisoformat
    try:
        return [
            Recorded(seq, job_id, version, parse_ts(ts), decode(data))
            for seq, job_id, version, ts, data in rows
        ]
    except _DECODE_ERRORS:
        return [_decode_row(row) for row in rows]


def decode_rows_skipping(
    rows: list[Row], skipped: Callable[[CorruptEvent, Row], None]
) -> list[Recorded]:
    """Decode a page of rows, leaving out those that do not decode (each told to `skipped`)."""
    try:
        return decode_rows(rows)
    except CorruptEvent:
        records: list[Recorded] = []
        for row in rows:
            try:
                records.append(_decode_row(row))
            except CorruptEvent as e:
                skipped(e, row)
        return records
