"""Which bytes of a job's video a GET asks for: RFC 9110's Range and If-Range, decided purely.

aiohttp's FileResponse sends a single `bytes=` range well, but answers 416 to anything else,
with the video's content type and no body, and it reads an `If-Range` entity tag as no
condition at all. So the output route decides first and gives FileResponse only the plain
single ranges it handles right:

- no Range, a unit other than bytes, or several ranges (which a server may ignore): the whole
  file, 200;
- an `If-Range` entity tag that is not the file's current one, or a value that is neither a
  tag nor a date: the whole file (the client's earlier bytes may be of another file; splicing
  them would corrupt the download; FileResponse reads an unreadable date as no condition);
- one range a client may ask of this file: 206, by FileResponse;
- a range whose last position (or suffix length) has more digits than any size: the whole file
  (a server may ignore Range; FileResponse's own parsing would fail on it);
- a malformed range, one starting at or past the end, or the empty suffix `-0`: a 416 problem.
"""

from __future__ import annotations

import email.utils
import enum
import re

__all__ = ["Ranged", "decide_range"]

#: exactly what aiohttp's `request.http_range` parses
_SINGLE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)
#: longer positions are past any file (and `int()` refuses more than 4,300 digits)
_MAX_DIGITS = 18


class Ranged(enum.Enum):
    WHOLE = "whole"
    PART = "part"
    UNSATISFIABLE = "unsatisfiable"


def decide_range(range_header: str | None, if_range: str | None, etag: str, size: int) -> Ranged:
    """What to send for `Range`/`If-Range` of a file of `size` bytes whose ETag value is `etag`.

    `etag` is unquoted, as aiohttp's FileResponse makes it (`mtime_ns-size` in hex).
    """
    if range_header is None:
        return Ranged.WHOLE
    condition = (if_range or "").strip()
    if condition.startswith(("W/", '"')):
        if condition != f'"{etag}"':
            return Ranged.WHOLE  # another file's tag, or a weak one (never a match for ranges)
    elif condition and email.utils.parsedate(condition) is None:  # as aiohttp parses a date
        return Ranged.WHOLE  # no validator at all: it matches no file
    unit, _, ranges = range_header.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return Ranged.WHOLE
    match = _SINGLE.fullmatch(range_header)
    if match is None:
        return Ranged.UNSATISFIABLE
    first, last = match.group(1), match.group(2)
    if len(first) > _MAX_DIGITS:
        return Ranged.UNSATISFIABLE  # it starts past the end
    if len(last) > _MAX_DIGITS:
        return Ranged.WHOLE  # to the end, or all of it; FileResponse could not parse it
    if first:
        if int(first) >= size or (last and int(last) < int(first)):
            return Ranged.UNSATISFIABLE
        return Ranged.PART
    if not last or int(last) == 0 or size == 0:  # `bytes=-`, the empty suffix `bytes=-0`
        return Ranged.UNSATISFIABLE
    return Ranged.PART
