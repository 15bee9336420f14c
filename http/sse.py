"""Server-sent events of one job: exact resume after `Last-Event-ID`, pushed live, fanned out lean.

Modelled on aiohttp-sse's `EventSourceResponse`: `id:` is the event's seq, `event:` its wire
name, `data:` one line of JSON; a `retry:` hint first, a `: ping` comment while idle,
`X-Accel-Buffering: no`. Open streams sit in a WeakSet that the app's on_shutdown stops.

INVARIANTS
- One store watch per job with listeners (a `JobFeed`), however many clients follow it; the
  log calls it right after each commit, so each event's frame is encoded once (the feed caches
  frames by seq) and pushed to every listener with no task in between.
- A listener whose handler is parked waiting for live frames has the frames of each commit
  written straight to its client's socket in one call, when the commit's appends have all been
  pushed (`JobFeed.on_commit`, `_Sender.write_now`): no task wakes per event and client, and a
  busy log's larger commits mean fewer, larger writes. A terminal frame that ends the stream
  (the feed has seen no retry after it) is written so too, and the handler only ends the body.
  Anything else (a backlog being sent, a full socket buffer, a terminal frame only the log can
  judge, a ping) goes through the handler, which writes each client's pending frames in one
  call; once a frame has gone to the handler, the rest follow it until the handler parks again,
  so frames leave in seq order either way.
- A client joins the feed before it reads its backlog from the log, and skips any seq it already
  sent: every event after the client's `Last-Event-ID` is sent exactly once, in seq order.
  (The feed sees every append after the log's last seq when it was made; whatever was committed
  by then is in any later backlog read.)
- A stream ends after a terminal event (JobSucceeded, JobFailed, JobCanceled) when the log holds
  no JobRetryRequested after it; a reconnect at or after it gets 204 (EventSource stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from typing import NamedTuple

import msgspec
from aiohttp import hdrs, web

from aura.engine.errors.taxonomy import AuraError
from aura.http.wire import ENCODER, TERMINAL_EVENT_TYPES, WIRE_NAMES, event_data
from aura.projections.events import JobRetryRequested, Recorded
from aura.store.log import EventLog

__all__ = [
    "EventStream",
    "FanOut",
    "Frame",
    "JobFeed",
    "Listener",
    "StreamConfig",
    "encode_frame",
    "parse_last_event_id",
    "serve_job_stream",
    "stop_streams",
]

#: events read from the log per backlog query
PAGE_SIZE = 500
#: frames a feed keeps encoded per job (newest kept)
FRAME_CACHE = 4096
#: frames a slow client may have waiting before it falls back to reading the log
LISTENER_BUFFER = 10_000
#: bytes a client's socket may hold unsent before live frames go through its handler instead
#: of straight from the feed (the handler's writes wait for the socket to drain, as aiohttp's
#: writer does every 64 KiB)
DIRECT_WRITE_LIMIT = 64 * 1024
_PING = b": ping\n\n"
#: the pinger visits every listener this many times per ping interval
VISITS_PER_PING = 2
_MAX_ID_DIGITS = 18


class StreamConfig(NamedTuple):
    #: the most seconds an idle stream stays silent: then it gets a keep-alive comment
    ping_interval: float = 15.0
    #: the reconnection delay suggested to clients, in milliseconds
    retry_ms: int = 2000
    #: streams open at once; past it a new one is refused with 503 ServerBusy (each holds a
    #: socket, a file descriptor and a task)
    max_streams: int = 10_000


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One event's SSE message, encoded once per feed. (Untracked by the garbage collector:
    it holds no containers; a feed caches up to FRAME_CACHE of them.)"""

    seq: int
    data: bytes
    terminal: bool


def encode_frame(rec: Recorded) -> Frame:
    """The SSE message for one recorded event (`id`, `event`, one-line `data`)."""
    data = ENCODER.encode(event_data(rec))
    head = f"id: {rec.seq}\nevent: {WIRE_NAMES[rec.type]}\ndata: ".encode()
    return Frame(rec.seq, head + data + b"\n\n", isinstance(rec.event, TERMINAL_EVENT_TYPES))


#: writes live frames to the client at once; returns how many it wrote, the rest being for the
#: handler (see `_Sender.write_now`)
DirectWrite = Callable[[list[Frame]], int]


class Listener:
    """One client's queue of live frames, filled by its job's feed."""

    __slots__ = (
        "closed",
        "direct",
        "ended",
        "idle_visits",
        "outbox",
        "overflowed",
        "pending",
        "ping_due",
        "wake",
    )

    def __init__(self) -> None:
        self.pending: list[Frame] = []  # for the handler
        self.outbox: list[Frame] = []  # this commit's frames, for `direct`
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        #: its stream's last frame was written straight from the feed: the handler ends it
        self.ended = False
        #: set only while the handler is parked in `next_batch` with nothing pending
        self.direct: DirectWrite | None = None
        #: the pinger's visits since the last push or ping
        self.idle_visits = 0
        self.ping_due = False

    def push(self, frame: Frame) -> None:
        self.idle_visits = 0
        self.ping_due = False
        if self.direct is not None:
            self.outbox.append(frame)  # written by `write_outbox`, after the commit
        elif not self.overflowed:
            self._queue(frame)

    def write_outbox(self) -> None:
        """Write the commit's frames straight to the client, in one call; those it cannot
        write go to the handler, and so does everything after them until it parks again."""
        frames = self.outbox
        written = self.direct(frames) if self.direct is not None else 0
        if written < len(frames):
            self.direct = None
            for frame in frames[written:]:
                self._queue(frame)
        frames.clear()  # the same list for the next commit: one object less per event

    def _queue(self, frame: Frame) -> None:
        if len(self.pending) >= LISTENER_BUFFER:
            self.pending.clear()  # too slow: it re-reads what it missed from the log
            self.overflowed = True
        else:
            self.pending.append(frame)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.direct = None
        self.wake.set()

    def end(self) -> None:
        """The stream's last frame is written: nothing more goes direct; the handler ends it."""
        self.ended = True
        self.direct = None
        self.wake.set()

    def tick(self) -> None:
        """The pinger's visit: a listener idle for VISITS_PER_PING visits owes its client a ping.

        Visits come VISITS_PER_PING times per interval, so a stream that went quiet at any moment
        gets its first ping 1/2 to 1 interval later (a visit per interval would allow up to two
        intervals of silence), then one ping per interval while it stays idle.
        """
        self.idle_visits += 1
        if self.idle_visits >= VISITS_PER_PING:
            self.idle_visits = 0
            self.ping_due = True
            self.wake.set()

    async def next_batch(self, direct: DirectWrite | None = None) -> list[Frame] | None:
        """The frames waiting (maybe none, if closed or overflowed); None when a ping is due.
        While it waits, pushed frames go to `direct` first.

        No timer per wait: one pinger per app visits every listener (see FanOut), so a busy
        stream pays nothing for keep-alives.
        """
        while not self.pending and not self.closed and not self.overflowed and not self.ended:
            if self.ping_due:
                self.ping_due = False
                return None
            self.wake.clear()
            self.direct = direct
            try:
                await self.wake.wait()
            finally:
                self.direct = None
        batch, self.pending = self.pending, []
        return batch


class JobFeed:
    """A watch of one job's appends (store.EventLog.watch), pushing each new event's frame to
    every listener right after its commit: no task wakes between the commit and the listeners.

    When the log closes the feed is dead: it closes its listeners, so their streams end and
    their clients reconnect with Last-Event-ID, and calls `on_end` (FanOut drops it).
    """

    def __init__(self, log: EventLog, job_id: str, on_end: Callable[[JobFeed], None]) -> None:
        self.job_id = job_id
        self.listeners: set[Listener] = set()
        self.dead = False
        self._frames: dict[int, Frame] = {}
        self._retries: list[int] = []  # seqs of the JobRetryRequested it has seen
        self._log = log
        self._on_end = on_end
        self._seen_after = log.watch(job_id, self)  # it sees every event after this seq

    def frame(self, rec: Recorded) -> Frame:
        """The event's frame, encoded once per feed."""
        frame = self._frames.get(rec.seq)
        if frame is None:
            frame = self._frames[rec.seq] = encode_frame(rec)
            if len(self._frames) > FRAME_CACHE:
                del self._frames[next(iter(self._frames))]
        return frame

    def on_events(self, recorded: list[Recorded]) -> None:
        for rec in recorded:
            if isinstance(rec.event, JobRetryRequested):
                self._retries.append(rec.seq)
            frame = self.frame(rec)
            for listener in self.listeners:
                listener.push(frame)

    def on_commit(self) -> None:
        for listener in self.listeners:
            if listener.outbox:
                listener.write_outbox()

    def retried_after(self, seq: int) -> bool | None:
        """Whether the job has a JobRetryRequested after `seq`, from what the feed has seen;
        None when `seq` is older than the feed (then only the log can tell)."""
        if seq < self._seen_after:
            return None
        return any(retry > seq for retry in self._retries)

    def on_end(self) -> None:
        self.dead = True
        for listener in self.listeners:
            listener.close()
        self._on_end(self)

    def stop(self) -> None:
        self.dead = True
        self._log.unwatch(self.job_id, self)


class FanOut:
    """The feeds of the jobs that have clients; a feed goes when its last client leaves.

    One pinger task visits every listener VISITS_PER_PING times each `ping_interval` and wakes
    those idle for that many visits, so no stream is silent for longer than `ping_interval`.
    """

    def __init__(self, log: EventLog, ping_interval: float) -> None:
        self.log = log
        self.ping_interval = ping_interval
        self.feeds: dict[str, JobFeed] = {}
        #: listeners of every feed
        self.listener_count = 0
        self._pinger: asyncio.Task[None] | None = None

    def join(self, job_id: str) -> tuple[JobFeed, Listener]:
        feed = self.feeds.get(job_id)
        if feed is None or feed.dead:
            feed = self.feeds[job_id] = JobFeed(self.log, job_id, self._drop)
        listener = Listener()
        feed.listeners.add(listener)
        self.listener_count += 1
        if self._pinger is None:
            self._pinger = asyncio.create_task(self._ping(), name="sse-pinger")
        return feed, listener

    def leave(self, feed: JobFeed, listener: Listener) -> None:
        if listener in feed.listeners:
            feed.listeners.discard(listener)
            self.listener_count -= 1
        if not feed.listeners:
            self._drop(feed)
            feed.stop()

    def _drop(self, feed: JobFeed) -> None:
        """Forget the feed (its last client left, or it died), not a newer one of its job."""
        if self.feeds.get(feed.job_id) is feed:
            del self.feeds[feed.job_id]

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval / VISITS_PER_PING)
            for feed in list(self.feeds.values()):
                for listener in feed.listeners:
                    listener.tick()

    def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        for feed in list(self.feeds.values()):
            feed.stop()
        self.feeds.clear()


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

    def stop(self) -> None:
        self.listener.close()


def stop_streams(streams: weakref.WeakSet[EventStream]) -> None:
    """End every open stream (on shutdown): each sends what it has and finishes."""
    for stream in list(streams):
        stream.stop()


def parse_last_event_id(request: web.Request, newest: int | None = None) -> int:
    """The seq to resume after: the `Last-Event-ID` header, else `?lastEventId=`, else 0.

    The header wins: a browser reconnects to the URL it opened (with its old query) and sends
    the newest id it saw in the header. An id above `newest` (the log's last seq, given for a
    job still running) was never sent: resuming after it would silently skip the job's events
    still to come up to it, its end included, so it is refused.
    """
    name, raw = "Last-Event-ID", request.headers.get("Last-Event-ID")
    if raw is None or not raw.strip():
        name, raw = "lastEventId", request.query.get("lastEventId")
    if raw is None or not raw.strip():
        return 0
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


async def _retried_after(log: EventLog, job_id: str, seq: int) -> bool:
    """Whether the log holds a JobRetryRequested of the job after `seq`."""
    while True:
        page = await log.read_job_after_seq(job_id, seq, PAGE_SIZE)
        if any(isinstance(rec.event, JobRetryRequested) for rec in page):
            return True
        if len(page) < PAGE_SIZE:
            return False
        seq = page[-1].seq


async def _ended_before(log: EventLog, job_id: str, after: int, first: list[Recorded]) -> bool:
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
        log: EventLog,
        request: web.Request,
        resp: EventStream,
        last: int,
    ) -> None:
        self.feed, self.log, self.job_id, self.resp, self.last = feed, log, feed.job_id, resp, last
        self._listener = listener
        self._transport = request.transport
        # The framing `write_now` must add, as aiohttp's writer does for this response
        self._chunked = resp.headers.get(hdrs.TRANSFER_ENCODING) == "chunked"
        self.direct: DirectWrite | None = None if resp.compression else self.write_now

    def write_now(self, frames: list[Frame]) -> int:
        """Write live frames straight to the client's socket in one call, from the feed, while
        the handler is parked: the socket's buffer takes them without blocking. Returns how many
        it took (written, or skipped as sent); the handler writes the rest. It writes none when
        the socket is closing or already holds DIRECT_WRITE_LIMIT bytes.

        A terminal frame ends the stream unless the feed has seen a retry after it: then it is
        the last frame written (it takes every frame, those after it being past the end) and
        the handler is told to end the body. If the feed cannot tell (the frame is older than
        the feed), it stops before the frame: the handler asks the log.
        """
        transport = self._transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return 0
        chunk = []
        count = 0
        ended = False
        for frame in frames:
            if frame.seq <= self.last:
                count += 1
                continue
            if frame.terminal:
                retried = self.feed.retried_after(frame.seq)
                if retried is None:
                    break
                ended = not retried
            count += 1
            chunk.append(frame.data)
            self.last = frame.seq
            if ended:
                count = len(frames)
                break
        if chunk:
            data = b"".join(chunk)
            # headers went out with the stream's first write (the retry hint), before this
            transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
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
        if end:  # the last frames and the end of the body in one write
            await self.resp.write_eof(b"".join(chunk))
        elif chunk:
            await self.resp.write(b"".join(chunk))
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
            await resp.prepare(request)
            streams.add(resp)
            await resp.write(f"retry: {config.retry_ms}\n\n".encode())
            await _pump(feed, listener, _Sender(feed, listener, log, request, resp, after), page)
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
                await sender.resp.write(_PING)
            elif await sender.send(batch):
                return
