"""A minimal, independent text/event-stream reader for the tests (not the CLI's): messages from
a response (`read_events`) or from bytes cut anywhere (`SseParser`, as EventSource counts them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse

from aura.http.wire import WIRE_NAMES

__all__ = [
    "WIRE_BY_TYPE",
    "SseEvent",
    "SseParser",
    "assert_stream_is_the_log",
    "parse_block",
    "read_events",
]

#: the log's type name -> the stream's event name
WIRE_BY_TYPE = {kind.__name__: name for kind, name in WIRE_NAMES.items()}


@dataclass(frozen=True)
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]
    #: the message's `retry:` field (not compared: only a stream's first message carries it)
    retry: int | None = field(default=None, compare=False)


def parse_block(lines: list[str]) -> SseEvent | None:
    """One message from its lines; None for a comment-only or retry-only block."""
    fields: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))
    if "data" not in fields:
        return None
    assert len(fields["data"]) == 1, f"data must be one line: {lines}"
    assert len(fields["id"]) == 1 and len(fields["event"]) == 1, lines
    retry = fields.get("retry", [])
    assert len(retry) <= 1, lines
    return SseEvent(
        int(fields["id"][0]),
        fields["event"][0],
        json.loads(fields["data"][0]),
        int(retry[0]) if retry else None,
    )


async def read_events(resp: ClientResponse, limit: int | None = None) -> list[SseEvent]:
    """Messages until the stream ends (or `limit` of them)."""
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events: list[SseEvent] = []
    lines: list[str] = []
    while limit is None or len(events) < limit:
        raw = await resp.content.readline()
        if not raw:
            break
        line = raw.decode().rstrip("\n")
        if line:
            lines.append(line)
            continue
        event = parse_block(lines)
        lines = []
        if event is not None:
            events.append(event)
    return events


class SseParser:
    """Messages from a stream's body fed in pieces cut anywhere (in a line, in a UTF-8
    character): as EventSource, a message counts only once the blank line ending it arrived."""

    def __init__(self) -> None:
        self._line = b""  # an unfinished line
        self._lines: list[str] = []  # the unfinished message's lines
        #: blank lines that ended a block holding no message (a comment, a lone `retry:`): the
        #: spec dispatches nothing, some clients (httpx-sse) yield an empty message
        self.empty_blocks = 0
        #: comment lines (keep-alive pings) read whole
        self.comments = 0

    @property
    def partial(self) -> bool:
        """Whether a line, or a message's field, has begun and not ended (a keep-alive comment
        line has no blank line after it: it is no unfinished message)."""
        return bool(self._line) or any(not line.startswith(":") for line in self._lines)

    def feed(self, data: bytes) -> list[SseEvent]:
        """The messages that `data` completes."""
        *complete, self._line = (self._line + data).split(b"\n")
        events: list[SseEvent] = []
        for raw in complete:
            line = raw.decode().removesuffix("\r")
            if line:
                self._lines.append(line)
                self.comments += line.startswith(":")
                continue
            event = parse_block(self._lines)
            self._lines = []
            if event is None:
                self.empty_blocks += 1
            else:
                events.append(event)
        return events


def assert_stream_is_the_log(events: list[SseEvent], lines: list[dict[str, Any]]) -> None:
    """`events` are `lines` (a job's `/log`, parsed): id = seq, event = the type's wire name,
    data = the job's id, the type, ts, and every payload field the log names the same way."""
    assert [(e.id, e.event) for e in events] == [
        (line["seq"], WIRE_BY_TYPE[line["type"]]) for line in lines
    ]
    assert len({e.data["jobId"] for e in events}) <= 1, events
    for event, line in zip(events, lines, strict=True):
        data, payload = event.data, line["data"]
        assert (data["type"], data["ts"]) == (line["type"], line["ts"]), (event, line)
        shared = data.keys() & payload.keys()
        assert {k: data[k] for k in shared} == {k: payload[k] for k in shared}, (event, line)
