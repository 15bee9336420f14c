"""The query of `GET /api/jobs`: which jobs (status), how many (limit), and where the page
starts: `offset` rows in, or after an opaque `cursor` from an earlier page's `nextCursor`.

A cursor is the base64url (unpadded) JSON `[1, status or null, createdUtc, jobId]`: the list's
filter and the place right after the last row of the page that gave it. The server seeks there
in the index, so a page deep in the list costs what the first one does; an offset walks the index
up to it. A cursor is checked whole (its alphabet and length, its base64, its JSON shape, the
time's format, a filter equal to `status` when both are given), and the listing then checks
that its job exists with that created time: anything else is `InvalidInput:cursor`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal, NamedTuple

import msgspec
from aiohttp import web

from aura.engine.errors.taxonomy import AuraError
from aura.projections.job import JobStatus
from aura.store.jobs_table import ListPosition

__all__ = [
    "CURSOR_PATTERN",
    "DEFAULT_LIST_LIMIT",
    "MAX_CURSOR_CHARS",
    "MAX_DIGITS",
    "MAX_LIST_LIMIT",
    "MAX_OFFSET",
    "ListQuery",
    "decode_cursor",
    "encode_cursor",
    "invalid_cursor",
    "invalid_query",
    "list_query",
]

DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500
MAX_OFFSET = 10**9
#: digits a number in a query may have: a seq is a SQLite integer, and int() refuses more
#: than 4,300 digits (a 500) or spends time on them
MAX_DIGITS = 18
#: a cursor's characters at most (a job id of up to _MAX_JOB_ID_CHARS fits)
MAX_CURSOR_CHARS = 512
CURSOR_PATTERN = f"^[A-Za-z0-9_-]{{1,{MAX_CURSOR_CHARS}}}$"
_CURSOR_CHARS = re.compile(CURSOR_PATTERN)
_MAX_JOB_ID_CHARS = 256
#: a created time as the jobs table stores it (store.rows.format_ts)
_CREATED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_VERSION = 1
_CursorBody = tuple[Literal[1], JobStatus | None, str, str]
_DECODER = msgspec.json.Decoder(_CursorBody)
_ENCODER = msgspec.json.Encoder()


class ListQuery(NamedTuple):
    status: JobStatus | None
    limit: int
    #: rows skipped; None when the page starts at a cursor
    offset: int | None
    after: ListPosition | None


def invalid_query(field: str, message: str) -> AuraError:
    return AuraError.of(f"InvalidInput:{field}", message, details={"field": field})


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if (
        not raw.isascii()
        or not raw.isdigit()
        or len(raw) > MAX_DIGITS
        or not low <= int(raw) <= high
    ):
        raise invalid_query(name, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _status_query(request: web.Request) -> JobStatus | None:
    raw = request.query.get("status")
    if raw is None:
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise invalid_query("status", f"status must be one of {names}") from None


def list_query(request: web.Request) -> ListQuery:
    """The list's query; InvalidInput naming the parameter at fault."""
    status = _status_query(request)
    limit = _int_query(request, "limit", DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT)
    raw_cursor = request.query.get("cursor")
    if raw_cursor is None:
        return ListQuery(status, limit, _int_query(request, "offset", 0, 0, MAX_OFFSET), None)
    if "offset" in request.query:
        raise invalid_cursor("give cursor or offset, not both (a cursor says where it starts)")
    filtered, after = decode_cursor(raw_cursor)
    if "status" in request.query and status is not filtered:
        raise invalid_cursor(
            f"the cursor continues the list of status {_name(filtered)}, not {_name(status)}: "
            "leave status out, or start again without the cursor"
        )
    return ListQuery(filtered, limit, None, after)


def _name(status: JobStatus | None) -> str:
    return "(any)" if status is None else status.value


def invalid_cursor(why: str) -> AuraError:
    return AuraError.of(
        "InvalidInput:cursor",
        f"cursor is not one this server gave: {why}",
        remediation="Pass nextCursor from a page of GET /api/jobs as it is, or list again "
        "from the first page without a cursor.",
        details={"field": "cursor"},
    )


def encode_cursor(position: ListPosition, status: JobStatus | None) -> str:
    """The cursor of the page that starts at `position` in the list of `status`."""
    body = _ENCODER.encode((_VERSION, status, position.created_utc, position.job_id))
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def decode_cursor(raw: str) -> tuple[JobStatus | None, ListPosition]:
    """The filter and position `raw` stands for; InvalidInput:cursor unless it is exactly what
    encode_cursor gives for some position."""
    if not _CURSOR_CHARS.fullmatch(raw):
        raise invalid_cursor(f"it must be 1 to {MAX_CURSOR_CHARS} characters of A-Z a-z 0-9 - _")
    try:
        body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        _, status, created, job_id = _DECODER.decode(body)
    except (binascii.Error, ValueError, msgspec.DecodeError):  # ValidationError is a DecodeError
        raise invalid_cursor("it does not decode") from None
    position = ListPosition(created, job_id)
    if (
        not _CREATED.fullmatch(created)
        or not 0 < len(job_id) <= _MAX_JOB_ID_CHARS
        or not job_id.isprintable()
        or encode_cursor(position, status) != raw  # any other spelling of it was altered
    ):
        raise invalid_cursor("it does not decode")
    return status, position
