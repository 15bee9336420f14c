"""A minimal, independent text/event-stream reader for the tests (not the CLI's)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse

__all__ = ["SseEvent", "parse_block", "read_events"]


@dataclass(frozen=True)
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


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
    return SseEvent(int(fields["id"][0]), fields["event"][0], json.loads(fields["data"][0]))


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
