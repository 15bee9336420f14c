"""Live subscriptions to the log: pushed by each commit, never polled within a process.

INVARIANTS
- A subscriber is registered before it reads its backlog, and skips any seq it already yielded,
  so events appended while the backlog is read arrive exactly once, with no gap.
- The log notifies in commit order, right after each commit, so a buffer is in seq order.
- A subscriber that falls SUBSCRIBER_BUFFER events behind drops its buffer and reads what it
  missed from the log: a slow reader costs memory up to that bound, never a lost event.
- With a poll interval (writers in other processes), a push only wakes the subscriber, which
  reads the log: another process's commit may lie between two of this process's.
- Events pushed before the log closed are still delivered.
- A watcher (a synchronous callback, for fan-outs that must not pay a task wake-up per event)
  is called with each append of its job right after the commit, in commit order, then once
  `on_commit` when the commit's appends are all told (a fan-out writes once per commit); it
  must not raise or block. One that raises is dropped and told the watch ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol

from aura.projections.events import Recorded

__all__ = ["SUBSCRIBER_BUFFER", "Subscriptions", "Watcher", "follow"]

logger = logging.getLogger(__name__)

#: live events a subscriber may have waiting before it falls back to reading the log
SUBSCRIBER_BUFFER = 10_000

#: reads the events after a seq (of the subscriber's job, or all), at most one page
ReadPage = Callable[[int], Awaitable[list[Recorded]]]


class Subscriber:
    __slots__ = ("buffer", "closed", "job_id", "overflowed", "wake")

    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self.buffer: list[Recorded] = []
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def push(self, rec: Recorded) -> None:
        if self.overflowed:
            return
        if len(self.buffer) >= SUBSCRIBER_BUFFER:
            self.buffer.clear()
            self.overflowed = True
        else:
            self.buffer.append(rec)

    async def wait_live(self, poll_interval: float | None) -> bool:
        """Wait for live events; False when the backlog must be read again (or closed)."""
        while not self.buffer:
            if self.closed or self.overflowed:
                return False
            self.wake.clear()
            if poll_interval is None:
                await self.wake.wait()
                continue
            try:  # asyncio.timeout: 3.11's wait_for can lose a cancel that comes as it wakes
                async with asyncio.timeout(poll_interval):
                    await self.wake.wait()
            except TimeoutError:
                return False  # re-read the log: another process may have written
        return not self.overflowed  # closed or not, what was pushed before is delivered


class Watcher(Protocol):
    """Called on the event loop's thread, right after each commit of its job's events."""

    def on_events(self, recorded: list[Recorded]) -> None: ...

    def on_commit(self) -> None:
        """Every append of the commit that called `on_events` has been told."""
        ...

    def on_end(self) -> None:
        """The watch is over: the log closed (or `on_events` raised)."""
        ...


class Subscriptions:
    """The subscribers of one log, by job (None: every job), and the watchers, by job."""

    def __init__(self) -> None:
        self._by_job: dict[str | None, set[Subscriber]] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._told: dict[Watcher, str] = {}  # watchers told of the commit's appends: their job

    @property
    def idle(self) -> bool:
        """No subscriber and no watcher: a commit has nobody to notify."""
        return not self._by_job and not self._watchers

    def watch(self, job_id: str, watcher: Watcher) -> None:
        self._watchers.setdefault(job_id, set()).add(watcher)

    def unwatch(self, job_id: str, watcher: Watcher) -> None:
        watchers = self._watchers.get(job_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[job_id]

    def add(self, job_id: str | None) -> Subscriber:
        sub = Subscriber(job_id)
        self._by_job.setdefault(job_id, set()).add(sub)
        return sub

    def remove(self, sub: Subscriber) -> None:
        subs = self._by_job.get(sub.job_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_job[sub.job_id]

    def notify(self, recorded: list[Recorded]) -> None:
        """Push one append's events (all of one job) to the subscribers that want them."""
        if self._watchers and recorded:
            self._call_watchers(recorded)
        if not self._by_job or not recorded:
            return
        targets = list(self._by_job.get(recorded[0].job_id, ()))
        targets.extend(self._by_job.get(None, ()))
        for sub in targets:
            for rec in recorded:
                sub.push(rec)
            sub.wake.set()

    def _call_watchers(self, recorded: list[Recorded]) -> None:
        job_id = recorded[0].job_id
        for watcher in list(self._watchers.get(job_id, ())):
            try:
                watcher.on_events(recorded)
            except Exception:  # a bug in the watcher must not fail the append that woke it
                self._drop(job_id, watcher)
            else:
                self._told[watcher] = job_id

    def commit_done(self) -> None:
        """The commit's appends have all been notified: tell the watchers that heard of them."""
        if not self._told:
            return
        told, self._told = self._told, {}
        for watcher, job_id in told.items():
            try:
                watcher.on_commit()
            except Exception:
                self._drop(job_id, watcher)

    def _drop(self, job_id: str, watcher: Watcher) -> None:
        logger.exception("a watcher of job %s failed; it is dropped", job_id)
        self._told.pop(watcher, None)
        self.unwatch(job_id, watcher)
        _end(watcher)

    def close(self) -> None:
        """End every subscription and watch (the log is closing)."""
        for subs in self._by_job.values():
            for sub in subs:
                sub.closed = True
                sub.wake.set()
        watchers = [w for ws in self._watchers.values() for w in ws]
        self._watchers.clear()
        for watcher in watchers:
            _end(watcher)

    def __len__(self) -> int:
        subscribers = sum(len(subs) for subs in self._by_job.values())
        return subscribers + sum(len(watchers) for watchers in self._watchers.values())


def _end(watcher: Watcher) -> None:
    """Tell `watcher` its watch ended; a bug there must not stop the commit that found it."""
    try:
        watcher.on_end()
    except Exception:
        logger.exception("a watcher failed as its watch ended")


async def follow(
    sub: Subscriber,
    read_page: ReadPage,
    page_size: int,
    after_seq: int,
    poll_interval: float | None,
    told: int | None = None,
) -> AsyncGenerator[Recorded, None]:
    """The events after `after_seq`: the backlog page by page, then live ones from `sub`.
    `told`: the last seq the log had told its subscriptions when `sub` was added, where every
    later commit of every process is told (PostgreSQL's dispatcher): from there on `sub` gets
    each event, so a subscription from `told` or later has no backlog to read."""
    last = after_seq
    backlog = told is None or after_seq < told
    while not sub.closed:
        sub.overflowed = False  # live events pile up in sub.buffer while the backlog is read
        while backlog:
            page = await read_page(last)
            for rec in page:
                yield rec
                last = rec.seq
            if len(page) < page_size:
                break
        backlog = True  # after an overflow, or a poll: read what `sub` missed
        while await sub.wait_live(poll_interval):
            pending, sub.buffer = sub.buffer, []
            if poll_interval is not None and not sub.closed:
                # another process may have committed between these: read them from the log
                break
            for rec in pending:
                if rec.seq > last:
                    yield rec
                    last = rec.seq
