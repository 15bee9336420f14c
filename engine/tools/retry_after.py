"""`Retry-After` (RFC 9110, section 10.2.3): how long a server asked to be left alone, bounded.

The header is delta-seconds (`120`) or an HTTP-date (`Fri, 31 Dec 1999 23:59:59 GMT`). Both the
CLI (a busy server's 503) and the speech client (a provider's 429 or 503) read it through
`retry_after`, which never returns more than the caller's cap: a hostile or silly value must
not stall anyone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["retry_after"]

#: delta-seconds; a fraction (`1.5`, which some servers send) is taken as meant
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def retry_after(value: str | None, cap: float, now: datetime | None = None) -> float | None:
    """The seconds `value` (a Retry-After header) asks to wait, from 0 to `cap`; None when it is
    absent or unreadable (the caller's own backoff applies). A date in the past is 0 seconds;
    `now` (aware) is the current time."""
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        seconds = float(text)  # a very long number is inf, capped below
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # `-0000`: UTC, as an HTTP-date always is
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), cap)
