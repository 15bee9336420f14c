"""The fan-out of job events to the streams that follow them: one feed per job, one listener
per client.

INVARIANTS
- One store watch per job with listeners (a `JobFeed`), however many clients follow it; the
  log calls it right after each commit, so each event's frame is encoded once (the feed caches
  frames by seq) and pushed to every listener with no task in between.
- A listener whose handler is parked waiting for live frames has the frames of each commit
  written straight to its client's socket in one call, when the commit's appends have all been
  pushed (`JobFeed.on_commit`, then the `direct` write the handler gave, http/sse.py): no task
  wakes per event and client, and a busy log's larger commits mean fewer, larger writes. A
  terminal frame that ends the stream (the feed has seen no retry after it) is written so too,
  and the handler only ends the body. Anything else (a backlog being sent, a full socket
  buffer, a terminal frame only the log can judge, a ping) goes through the handler, which
  writes each client's pending frames in one call; once a frame has gone to the handler, the
  rest follow it until the handler parks again, so frames leave in seq order either way.
- The feed sees every append after the log's last seq when it was made (`retried_after`
  answers from what it saw, or says it cannot).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

from aura.http.frames import Frame, encode_frame
from aura.projections.events import JobRetryRequested, Recorded
from aura.store.interface import EventStore

__all__ = [
    "FRAME_CACHE",
    "LISTENER_BUFFER",
    "VISITS_PER_PING",
    "DirectWrite",
    "FanOut",
    "JobFeed",
    "Listener",
]

#: frames a feed keeps encoded per job (newest kept)
FRAME_CACHE = 4096
#: frames a slow client may have waiting before it falls back to reading the log
LISTENER_BUFFER = 10_000
#: the pinger visits every listener this many times per ping interval
VISITS_PER_PING = 2


#: writes live frames to the client at once; returns how many it wrote, the rest being for the
#: handler (a job stream gives its `_Sender.write_now`, http/sse.py)
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
    """A watch of one job's appends (EventStore.watch), pushing each new event's frame to
    every listener right after its commit: no task wakes between the commit and the listeners.

    When the log closes the feed is dead: it closes its listeners, so their streams end and
    their clients reconnect with Last-Event-ID, and calls `on_end` (FanOut drops it).
    """

    def __init__(self, log: EventStore, job_id: str, on_end: Callable[[JobFeed], None]) -> None:
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

    def __init__(self, log: EventStore, ping_interval: float) -> None:
        self.log = log
        self.ping_interval = ping_interval
        self.feeds: dict[str, JobFeed] = {}
        #: listeners of every feed
        self.listener_count = 0
        #: messages written to these listeners' clients, ever (http/metrics.py reads it)
        self.delivered = 0
        self._pinger: asyncio.Task[None] | None = None

    def join(self, job_id: str) -> tuple[JobFeed, Listener]:
        feed = self.feeds.get(job_id)
        if feed is None or feed.dead:
            feed = self.feeds[job_id] = JobFeed(self.log, job_id, self._drop)
        listener = Listener()
        feed.listeners.add(listener)
        self.listener_count += 1
        if self._pinger is None:
            # a fresh context: it serves every client, so it logs as none of them
            self._pinger = asyncio.create_task(
                self._ping(), name="sse-pinger", context=contextvars.Context()
            )
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
