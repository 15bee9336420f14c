"""Tells one process's subscriptions and watchers of every commit to a PostgreSQL log, its own
and other processes', exactly once and in seq order.

INVARIANTS
- Seqs are gapless and become visible in order (store/pg/batch.py), so `dispatched`, the last
  seq told, is a complete position: the next commit to tell starts at `dispatched + 1`.
- This process's own commit is told straight from its records when it starts right there (no
  other process committed in between), as SQLite's log does; otherwise, and for other processes'
  commits (known from their NOTIFY payload, or from the log's last seq after the listener
  reconnects), the pump reads the log from `dispatched` on, so a missed notification only delays
  events, never loses one.
- Only the pump task tells while it runs, so nothing is told twice or out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable

from aura.projections.events import Recorded
from aura.store.errors import StoreError
from aura.store.subscriptions import Subscriptions

__all__ = ["READ_RETRY_DELAYS", "Dispatcher"]

logger = logging.getLogger(__name__)

#: seconds between tries of a read of the log that failed (a dropped connection), the last repeated
READ_RETRY_DELAYS = (0.05, 0.2, 1.0)

#: reads the log's events after a seq, in seq order, one page
ReadTail = Callable[[int], Awaitable[list[Recorded]]]


class Dispatcher:
    def __init__(self, subscriptions: Subscriptions, read_tail: ReadTail, last_seq: int) -> None:
        self._subscriptions = subscriptions
        self._read_tail = read_tail
        #: the last seq told to the subscriptions
        self.dispatched = last_seq
        #: the last seq known to be committed
        self.known = last_seq
        self._own: dict[int, list[list[Recorded]]] = {}  # own commits waiting: first seq -> appends
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._stopped = False

    def committed_here(self, appends: list[list[Recorded]]) -> None:
        """This process committed `appends` (each one append's records, in seq order)."""
        first, last = appends[0][0].seq, appends[-1][-1].seq
        if last <= self.dispatched:  # already told from the log's rows (another's news came first)
            return
        self.known = max(self.known, last)
        if self._pump is None and first == self.dispatched + 1:
            self._tell(appends)
            return
        self._own[first] = appends
        self._start()

    def committed_elsewhere(self, last_seq: int) -> None:
        """The log holds every seq up to `last_seq` (a notification, or read after reconnecting)."""
        if last_seq > self.known:
            self.known = last_seq
            self._start()

    def _start(self) -> None:
        self._wake.set()
        if self._pump is None and not self._stopped:
            # a fresh context: it serves every subscriber, so it logs as none of them
            self._pump = asyncio.create_task(
                self._run(), name="pg dispatch", context=contextvars.Context()
            )

    def _tell(self, appends: list[list[Recorded]]) -> None:
        subscriptions = self._subscriptions
        if not subscriptions.idle:
            for records in appends:
                subscriptions.notify(records)
            subscriptions.commit_done()
        self.dispatched = appends[-1][-1].seq

    async def _run(self) -> None:
        try:
            while self.dispatched < self.known:
                self._wake.clear()
                own = self._own.pop(self.dispatched + 1, None)
                if own is not None:
                    self._tell(own)
                elif self._subscriptions.idle:  # nobody to tell: skip to the next own commit
                    waiting = [first - 1 for first in self._own if first > self.dispatched]
                    self.dispatched = min([self.known, *waiting])
                else:
                    page = await self._read(self.dispatched)
                    if not page:  # not visible here yet: wait for the next news
                        await self._wake.wait()
                        continue
                    self._tell(_by_append(page))
                for first in [f for f in self._own if f <= self.dispatched]:
                    del self._own[first]  # told from the log's rows
        finally:
            self._pump = None

    async def _read(self, after: int) -> list[Recorded]:
        """The page after `after`, tried again while the database cannot be reached."""
        attempt = 0
        while True:
            try:
                return await self._read_tail(after)
            except StoreError as e:
                delay = READ_RETRY_DELAYS[min(attempt, len(READ_RETRY_DELAYS) - 1)]
                logger.warning("reading the log for its subscribers: %s; again in %.2f s", e, delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def finish(self, grace: float) -> None:
        """Tell what is known (this process's commits at least), then stop."""
        self._stopped = True
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump), grace)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


def _by_append(page: list[Recorded]) -> list[list[Recorded]]:
    """A page of the log cut into runs of one job each (`Subscriptions.notify` takes one job's)."""
    runs: list[list[Recorded]] = []
    for rec in page:
        if runs and runs[-1][-1].job_id == rec.job_id:
            runs[-1].append(rec)
        else:
            runs.append([rec])
    return runs
