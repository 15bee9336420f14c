"""`GET /api/events`: server-sent events of the job list's row changes, for a live job list.

Each message is `id: <seq>`, `event: job-changed`, `data: {"seq": N, "job": <JobSummary>}`: the
job's row (a row of `GET /api/jobs`) as it was right after event N. Only an event that changes a
row makes a message (projections.job_list.apply_row decides; progress ticks and step transitions
do not). Framing is http/frames.py's, listeners and keep-alive visits http/fanout.py's, the
stream, shutdown (`stop_streams`) and resuming (`parse_last_event_id`) http/sse.py's.

INVARIANTS
- One log subscription (every job) per app while the list has clients (`JobListFeed`): each row
  change is encoded once and pushed to every listener. While nobody follows the list there is
  none, so job streams pay nothing for it.
- A client joins the feed before it reads its backlog from the log, and skips any seq it already
  sent: every row change after its Last-Event-ID is sent exactly once, in seq order (as a job
  stream does; the feed sees every event after the log's last seq when it started).
- A message's row is exact as of its seq: `Rows` applies a job's events in seq order to its row
  as of the event before, which it folds from the job's log the first time it meets the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref

from aiohttp import web

from aura.http.fanout import VISITS_PER_PING, Listener
from aura.http.frames import PING, Frame, encode_change
from aura.http.sse import PAGE_SIZE, EventStream, StreamConfig
from aura.projections.events import JobCreated, Recorded
from aura.projections.job_list import ROW_EVENTS, JobRow, apply_row
from aura.store.interface import EventStore, JobList

__all__ = ["JobListFeed", "Rows", "serve_list_stream"]

logger = logging.getLogger(__name__)

#: rows a `Rows` keeps (the oldest forgotten first; a forgotten one is folded again if needed)
ROW_CACHE = 4096


class Rows:
    """Jobs' rows as of the last event applied; turns row-changing events into frames. Events
    must come in seq order, each once."""

    def __init__(self, log: EventStore) -> None:
        self._log = log
        self._rows: dict[str, JobRow] = {}

    async def frame(self, rec: Recorded) -> Frame | None:
        """The message for `rec`, or None when it leaves the job's row as it was."""
        if type(rec.event) not in ROW_EVENTS:
            return None
        row = self._rows.pop(rec.job_id, None)  # put back last: the newest is kept longest
        if row is None and not isinstance(rec.event, JobCreated):
            row = await self._row_before(rec)
        new = apply_row(row, rec)
        if new is None:
            return None
        self._rows[rec.job_id] = new
        if len(self._rows) > ROW_CACHE:
            del self._rows[next(iter(self._rows))]
        return None if new == row else encode_change(rec.seq, new)

    async def _row_before(self, rec: Recorded) -> JobRow | None:
        row = None
        for earlier in await self._log.read(rec.job_id):
            if earlier.version >= rec.version:
                break
            row = apply_row(row, earlier)
        return row


class JobListFeed:
    """Follows the log (every job) while it has listeners and pushes each row change's frame to
    them; pings idle ones (Listener.tick, VISITS_PER_PING times per ping interval)."""

    def __init__(self, log: EventStore, table: JobList, ping_interval: float) -> None:
        self.log = log
        self.table = table
        self.ping_interval = ping_interval
        self.listeners: set[Listener] = set()
        #: messages written to these listeners' clients, ever (http/metrics.py reads it)
        self.delivered = 0
        self._tasks: tuple[asyncio.Task[None], ...] = ()

    @property
    def listener_count(self) -> int:
        return len(self.listeners)

    def join(self) -> Listener:
        if not self._tasks:
            # it sees every event after the log's last seq now (subscribe reads what is
            # committed before its first live one)
            # fresh contexts: they serve every client, so they log as none of them
            follow = asyncio.create_task(
                self._follow(self.log.last_seq), name="sse-jobs-feed", context=contextvars.Context()
            )
            ping = asyncio.create_task(
                self._ping(), name="sse-jobs-pinger", context=contextvars.Context()
            )
            self._tasks = (follow, ping)
        listener = Listener()
        self.listeners.add(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if not self.listeners:
            self.close()

    def close(self) -> None:
        tasks, self._tasks = self._tasks, ()
        for task in tasks:
            task.cancel()

    async def _follow(self, after: int) -> None:
        rows = Rows(self.log)
        try:
            async with contextlib.aclosing(self.log.subscribe(after)) as events:
                async for rec in events:
                    if type(rec.event) not in ROW_EVENTS:
                        continue  # most events: one set lookup
                    frame = await rows.frame(rec)
                    if frame is not None:
                        for listener in self.listeners:
                            listener.push(frame)
        except Exception:  # a corrupt row, a failed read: its clients reconnect and read again
            logger.exception("the job list's feed failed")
        finally:
            # the log closed (or it failed): its streams end and their clients reconnect
            if self._tasks and self._tasks[0] is asyncio.current_task():
                self._tasks[1].cancel()
                self._tasks = ()
                for listener in self.listeners:
                    listener.close()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval / VISITS_PER_PING)
            for listener in self.listeners:
                listener.tick()


async def serve_list_stream(
    request: web.Request,
    *,
    feed: JobListFeed,
    streams: weakref.WeakSet[EventStream],
    config: StreamConfig,
    after: int,
) -> web.StreamResponse:
    """Answer `GET /api/events` with the row changes after seq `after`, then live ones."""
    listener = feed.join()
    try:
        resp = EventStream(listener)
        with contextlib.suppress(ConnectionResetError):  # the client went away
            await resp.start(request, streams, config.retry_ms)
            await _pump(feed, listener, resp, after)
        return resp
    finally:
        feed.leave(listener)


async def _pump(feed: JobListFeed, listener: Listener, resp: EventStream, last: int) -> None:
    """`last`: every row change at or before it has been sent (or was before the stream)."""

    async def send(frames: list[Frame]) -> None:
        nonlocal last
        chunk = []
        for frame in frames:
            if frame.seq > last:
                chunk.append(frame.data)
                last = frame.seq
        if chunk:  # the first carries the retry hint
            await resp.write(resp.with_retry(b"".join(chunk)))
            feed.delivered += len(chunk)

    while True:
        # Backlog from the log, page by page (rows as of `last`, folded afresh: the live frames
        # sent since the last backlog are not in this one's rows); live frames pile up meanwhile.
        rows = Rows(feed.log)
        while True:
            page = await feed.table.row_events_after(last, PAGE_SIZE)
            frames = [frame for rec in page if (frame := await rows.frame(rec)) is not None]
            await send(frames)
            if page:
                last = max(last, page[-1].seq)
            if len(page) < PAGE_SIZE:
                break
        # Live: what the feed pushed, skipping what the backlog already sent.
        while True:
            batch = await listener.next_batch()
            if listener.closed:  # shutdown or the log closed: send what arrived, then end
                await send(batch or [])
                return
            if listener.overflowed:
                listener.overflowed = False
                break
            if batch is None:
                await resp.write(PING)
            else:
                await send(batch)
