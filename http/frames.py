"""SSE messages as bytes: a job event's frame, a job list's row change, the keep-alive ping.

A message is `id: <seq>`, `event: <wire name>`, `data: <one line of JSON>`, then a blank line
(aiohttp-sse's `EventSourceResponse` framing). Each is encoded once, by the feed that fans it out.
A stream's first message also carries the `retry:` field, written before it (`retry_field`).
"""

from __future__ import annotations

import msgspec

from aura.http.wire import (
    ENCODER,
    TERMINAL_EVENT_TYPES,
    WIRE_NAMES,
    JobChanged,
    event_data,
    job_summary,
)
from aura.projections.events import Recorded
from aura.projections.job_list import JobRow

__all__ = ["PING", "Frame", "encode_change", "encode_frame", "retry_field"]

#: the comment an idle stream gets (EventSource ignores it; proxies see traffic)
PING = b": ping\n"


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One event's SSE message, encoded once per feed. (Untracked by the garbage collector:
    it holds no containers; a feed caches many of them.)"""

    seq: int
    data: bytes
    terminal: bool


def encode_frame(rec: Recorded) -> Frame:
    """The SSE message for one recorded event (`id`, `event`, one-line `data`)."""
    data = ENCODER.encode(event_data(rec))
    head = f"id: {rec.seq}\nevent: {WIRE_NAMES[type(rec.event)]}\ndata: ".encode()
    return Frame(rec.seq, head + data + b"\n\n", isinstance(rec.event, TERMINAL_EVENT_TYPES))


def encode_change(seq: int, row: JobRow) -> Frame:
    """The `job-changed` message of `GET /api/events`: the job's row right after event `seq`."""
    data = ENCODER.encode(JobChanged(seq=seq, job=job_summary(row)))
    return Frame(seq, b"id: %d\nevent: job-changed\ndata: %b\n\n" % (seq, data), False)


def retry_field(retry_ms: int) -> bytes:
    """The reconnection delay suggested to the client: a field line that goes right before a
    stream's first message, so it is part of that message. (Never a block of its own: the spec
    dispatches nothing for it, but httpx-sse yields it as a message with empty data.)"""
    return b"retry: %d\n" % retry_ms
