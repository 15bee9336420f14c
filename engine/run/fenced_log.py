"""The log as one leased job's run sees it: every append carries the job's lease (its fencing
token), and an append the log refuses for any reason but a stale version tells the holder,
which stops the run (a worker that lost its lease, or its database, must append nothing more).
An append that ends the job gives the lease up in its own commit (`released`).

Everything else is the PostgreSQL log's own method, unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import datetime

from aura.projections.events import Event, Recorded
from aura.projections.status import TERMINAL_JOB_STATUSES, job_status_after
from aura.store.batch import QueuedAppend
from aura.store.errors import ConcurrencyError
from aura.store.group_commit import CommitObserver
from aura.store.pg.leases import Lease
from aura.store.pg.log import PgEventLog
from aura.store.subscriptions import Watcher

__all__ = ["FencedLog"]

#: told of an append refused for another reason than a stale version: (job_id, the error)
OnRefused = Callable[[str, BaseException], None]


class FencedLog:
    """A PgEventLog whose appends of one job carry `lease` (an EventStore)."""

    def __init__(self, log: PgEventLog, lease: Lease, on_refused: OnRefused) -> None:
        self._log = log
        self.lease = lease
        self._on_refused = on_refused
        #: an append that ended the job committed, and gave the lease up in its transaction
        #: (store/pg/schema.py, migration 3): the holder has nothing left to release
        self.released = False

    # ---- appending, fenced ---------------------------------------------------------------

    def append_nowait(
        self,
        job_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        after: QueuedAppend | None = None,
    ) -> QueuedAppend:
        queued = self._log.append_nowait(
            job_id, events, expected_version, after=after, fence=self.lease
        )
        queued.future.add_done_callback(self._settled)
        return queued

    def append(
        self, job_id: str, events: Sequence[Event], expected_version: int
    ) -> asyncio.Future[list[Recorded]]:
        return self.append_nowait(job_id, events, expected_version).future

    def _settled(self, future: asyncio.Future[list[Recorded]]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None and any(
            job_status_after(rec.event) in TERMINAL_JOB_STATUSES for rec in future.result()
        ):
            self.released = True
        # a stale version: someone else wrote the job, and the run stops at that append itself
        if error is not None and not isinstance(error, ConcurrencyError):
            self._on_refused(self.lease.job_id, error)

    # ---- the rest: the log's own ---------------------------------------------------------

    @property
    def commit_observer(self) -> CommitObserver | None:
        return self._log.commit_observer

    @commit_observer.setter
    def commit_observer(self, observer: CommitObserver | None) -> None:
        self._log.commit_observer = observer

    @property
    def closing(self) -> bool:
        return self._log.closing

    @property
    def last_seq(self) -> int:
        return self._log.last_seq

    @property
    def unreachable_since(self) -> datetime | None:
        return self._log.unreachable_since

    @property
    def subscriber_count(self) -> int:
        return self._log.subscriber_count

    async def read(self, job_id: str, after_version: int = 0) -> list[Recorded]:
        return await self._log.read(job_id, after_version)

    async def read_job_after_seq(
        self, job_id: str, after_seq: int, limit: int = 1000
    ) -> list[Recorded]:
        return await self._log.read_job_after_seq(job_id, after_seq, limit)

    async def tail(self, after_seq: int = 0, limit: int = 1000) -> list[Recorded]:
        return await self._log.tail(after_seq, limit)

    async def max_seq(self) -> int:
        return await self._log.max_seq()

    def subscribe(
        self, after_seq: int = 0, job_id: str | None = None
    ) -> AsyncGenerator[Recorded, None]:
        return self._log.subscribe(after_seq, job_id)

    def watch(self, job_id: str, watcher: Watcher) -> int:
        return self._log.watch(job_id, watcher)

    def unwatch(self, job_id: str, watcher: Watcher) -> None:
        self._log.unwatch(job_id, watcher)

    async def close(self) -> None:
        """The log is the engine's, closed by it: a run never closes it."""

    async def __aenter__(self) -> FencedLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass
