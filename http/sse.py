"""Server-sent events of one job: exact resume after `Last-Event-ID`, pushed live.

Modelled on aiohttp-sse's `EventSourceResponse`: `id:` is the event's seq, `event:` its wire
name, `data:` one line of JSON; the `retry:` hint in the first event's message (never a block of
its own, which httpx-sse reads as an empty message), a `: ping` comment line while idle (with
no blank line after it, for the same reason), `X-Accel-Buffering: no`. Open streams sit in a
WeakSet that the app's on_shutdown stops. The frames come from the job's feed
(http/fanout.py), encoded once (http/frames.py).

INVARIANTS
- A client joins the feed before it reads its backlog from the log, and skips any seq it already
  sent: every event after the client's `Last-Event-ID` is sent exactly once, in seq order.
  (The feed sees every append after the log's last seq when it was made; whatever was committed
  by then is in any later backlog read.)
- Live frames go straight from the feed to the socket only while the handler is parked, and
  once the stream's first event (with the retry hint) has gone through the response
  (`_Sender.write_now`, through the one raw write, http/transport_write.py); see fanout.py.
- A stream ends after a terminal event (JobSucceeded, JobFailed, JobCanceled) when the log holds
  no JobRetryRequested after it; a reconnect at or after it gets 204 (EventSource stops).
"""

from __future__ import annotations

import contextlib
import weakref
from typing import NamedTuple

from aiohttp import web

from aura.engine.errors.taxonomy import AuraError
from aura.http.fanout import DirectWrite, FanOut, JobFeed, Listener
from aura.http.frames import PING, Frame, retry_field
from aura.http.transport_write import TransportWriter
from aura.http.wire import TERMINAL_EVENT_TYPES
from aura.projections.events import JobRetryRequested, Recorded
from aura.store.interface import EventStore

__all__ = [
    "PAGE_SIZE",
    "EventStream",
    "StreamConfig",
    "given_last_event_id",
    "parse_last_event_id",
    "serve_job_stream",
    "stop_streams",
]

#: events read from the log per backlog query
PAGE_SIZE = 500
_MAX_ID_DIGITS = 18


class StreamConfig(NamedTuple):
    #: the most seconds an idle stream stays silent: then it gets a keep-alive comment
    ping_interval: float = 15.0
    #: the reconnection delay suggested to clients, in milliseconds
    retry_ms: int = 2000
    #: streams open at once; past it a new one is refused with 503 ServerBusy (each holds a
    #: socket, a file descriptor and a task)
    max_streams: int = 10_000


class EventStream(web.StreamResponse):
    """A `text/event-stream` response bound to one listener; `stop()` ends it."""

    def __init__(self, listener: Listener) -> None:
        super().__init__(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "X-Accel-Buffering": "no",
            },
        )
        self.listener = listener
        #: the retry hint, until the stream's first event goes (`with_retry`)
        self._retry = b""

    async def start(
        self, request: web.Request, streams: weakref.WeakSet[EventStream], retry_ms: int
    ) -> None:
        """Send the headers (aiohttp sends a StreamResponse's at once); `streams` holds it while
        it lives. The retry hint goes with the first event (`with_retry`)."""
        await self.prepare(request)
        streams.add(self)
        self._retry = retry_field(retry_ms)

    def with_retry(self, messages: bytes) -> bytes:
        """`messages` (whole events), the first carrying the retry hint if none has gone yet.
        (Pings before it go bare: a comment with `retry:` is an empty message to httpx-sse.)"""
        retry = self._retry
        if not retry:
            return messages
        self._retry = b""
        return retry + messages

    def stop(self) -> None:
        self.listener.close()


def stop_streams(streams: weakref.WeakSet[EventStream]) -> None:
    """End every open stream (on shutdown): each sends what it has and finishes."""
    for stream in list(streams):
        stream.stop()


def given_last_event_id(request: web.Request) -> tuple[str, str] | None:
    """Where the client asks to resume from, and the raw id (not blank): the `Last-Event-ID`
    header, else `?lastEventId=`; None when it gives neither."""
    for name, raw in (
        ("Last-Event-ID", request.headers.get("Last-Event-ID")),
        ("lastEventId", request.query.get("lastEventId")),
    ):
        if raw is not None and raw.strip():
            return name, raw
    return None


def parse_last_event_id(request: web.Request, newest: int | None = None) -> int:
    """The seq to resume after: the `Last-Event-ID` header, else `?lastEventId=`, else 0.

    The header wins: a browser reconnects to the URL it opened (with its old query) and sends
    the newest id it saw in the header. An id above `newest` (the log's last seq, given for a
    job still running) was never sent: resuming after it would silently skip the job's events
    still to come up to it, its end included, so it is refused.
    """
    given = given_last_event_id(request)
    if given is None:
        return 0
    name, raw = given
    value = raw.strip()
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_ID_DIGITS:
        raise AuraError.of(
            f"InvalidInput:{name}",
            f"{name} must be an event id (a non-negative integer), got {raw[:40]!r}",
            details={"field": name},
        )
    if newest is not None and int(value) > newest:
        raise AuraError.of(
            f"InvalidInput:{name}",
            f"{name} {value} is no event of this server: its newest is {newest}",
            remediation=f"Open the stream without {name} to start from the job's first event.",
            details={"field": name},
        )
    return int(value)


async def _retried_after(log: EventStore, job_id: str, seq: int) -> bool:
    """Whether the log holds a JobRetryRequested of the job after `seq`."""
    while True:
        page = await log.read_job_after_seq(job_id, seq, PAGE_SIZE)
        if any(isinstance(rec.event, JobRetryRequested) for rec in page):
            return True
        if len(page) < PAGE_SIZE:
            return False
        seq = page[-1].seq


async def _ended_before(log: EventStore, job_id: str, after: int, first: list[Recorded]) -> bool:
    """For a job whose state is terminal: whether its last terminal event is at or before
    `after` (no terminal event and no retry after it), so a reconnect gets 204."""
    page = first
    while True:
        for rec in page:
            if isinstance(rec.event, (*TERMINAL_EVENT_TYPES, JobRetryRequested)):
                return False
        if len(page) < PAGE_SIZE:
            return True
        page = await log.read_job_after_seq(job_id, page[-1].seq, PAGE_SIZE)


class _Sender:
    """Writes frames in order, once each, and says when the stream must end."""

    def __init__(
        self,
        feed: JobFeed,
        listener: Listener,
        fanout: FanOut,
        request: web.Request,
        resp: EventStream,
        last: int,
    ) -> None:
        self.feed, self.job_id, self.resp, self.last = feed, feed.job_id, resp, last
        self.log = fanout.log
        self._listener = listener
        self._fanout = fanout  # counts the messages delivered
        socket = TransportWriter.for_response(request, resp)
        #: the one raw write (None: this response takes none, so `write_now` is never given)
        self._write_raw = None if socket is None else socket.write
        #: given to the listener once the first event has gone through the response (with the
        #: retry hint): until then none goes direct
        self.direct: DirectWrite | None = None
        self._first = True

    def write_now(self, frames: list[Frame]) -> int:
        """Write live frames straight to the client's socket in one call, from the feed, while
        the handler is parked: the socket's buffer takes them without blocking. Returns how many
        it took (written, or skipped as sent); the handler writes the rest. It writes none when
        the socket refuses them (closing, or its buffer full: TransportWriter.write).

        A terminal frame ends the stream unless the feed has seen a retry after it: then it is
        the last frame written (it takes every frame, those after it being past the end) and
        the handler is told to end the body. If the feed cannot tell (the frame is older than
        the feed), it stops before the frame: the handler asks the log.
        """
        chunk = []
        count = 0
        last = self.last
        ended = False
        for frame in frames:
            if frame.seq <= last:
                count += 1
                continue
            if frame.terminal:
                retried = self.feed.retried_after(frame.seq)
                if retried is None:
                    break
                ended = not retried
            count += 1
            chunk.append(frame.data)
            last = frame.seq
            if ended:
                count = len(frames)
                break
        if chunk:
            if self._write_raw is None or not self._write_raw(b"".join(chunk)):
                return 0
            self.last = last
            self._fanout.delivered += len(chunk)
        if ended:
            self._listener.end()
        return count

    async def _retried_after(self, seq: int) -> bool:
        known = self.feed.retried_after(seq)  # a live terminal event: no read of the log
        return known if known is not None else await _retried_after(self.log, self.job_id, seq)

    async def send(self, frames: list[Frame]) -> bool:
        """Write the frames after `last` in one call; True when the stream must end."""
        chunk: list[bytes] = []
        end = False
        for frame in frames:
            if frame.seq <= self.last:
                continue
            chunk.append(frame.data)
            self.last = frame.seq
            if frame.terminal and not await self._retried_after(frame.seq):
                end = True
                break
        if not chunk:
            return False
        data = b"".join(chunk)
        if self._first:  # the retry hint goes with it; live frames may go direct after it
            self._first = False
            data = self.resp.with_retry(data)
            self.direct = None if self._write_raw is None else self.write_now
        if end:  # the last frames and the end of the body in one write
            await self.resp.write_eof(data)
        else:
            await self.resp.write(data)
        self._fanout.delivered += len(chunk)
        return end


async def serve_job_stream(
    request: web.Request,
    *,
    fanout: FanOut,
    streams: weakref.WeakSet[EventStream],
    config: StreamConfig,
    job_id: str,
    after: int,
    terminal: bool,
) -> web.StreamResponse:
    """Answer `GET /api/jobs/{id}/events` for a job known to exist; `terminal`: its state now."""
    log = fanout.log
    feed, listener = fanout.join(job_id)
    try:
        page = await log.read_job_after_seq(job_id, after, PAGE_SIZE)
        if terminal and await _ended_before(log, job_id, after, page):
            return web.Response(status=204)
        resp = EventStream(listener)
        with contextlib.suppress(ConnectionResetError):  # the client went away
            await resp.start(request, streams, config.retry_ms)
            sender = _Sender(feed, listener, fanout, request, resp, after)
            await _pump(feed, listener, sender, page)
        return resp
    finally:
        fanout.leave(feed, listener)


async def _pump(feed: JobFeed, listener: Listener, sender: _Sender, page: list[Recorded]) -> None:
    log, job_id = sender.log, sender.job_id
    while True:
        # Backlog from the log, page by page; live frames pile up in the listener meanwhile.
        while True:
            if await sender.send([feed.frame(rec) for rec in page]):
                return
            if len(page) < PAGE_SIZE:
                break
            page = await log.read_job_after_seq(job_id, sender.last, PAGE_SIZE)
        # Live: what the feed pushed, skipping what the backlog already sent.
        while True:
            batch = await listener.next_batch(sender.direct)
            if listener.ended:  # its last frame went straight from the feed
                return
            if listener.closed:  # shutdown or the log closed: send what arrived, then end
                await sender.send(batch or [])
                return
            if listener.overflowed:
                listener.overflowed = False
                page = await log.read_job_after_seq(job_id, sender.last, PAGE_SIZE)
                break
            if batch is None:
                await sender.resp.write(PING)
            elif await sender.send(batch):
                return
