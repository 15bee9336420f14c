"""Group commit: appends queued as they come, committed in batches, then settled in order.

INVARIANTS
- One writer per process: every append goes through the flush (`_flush_on_loop`, or the
  `_flush` task), one batch at a time, so seqs are handed out and subscribers are notified in
  commit order.
- At NORMAL durability a group commit runs on the event loop's own thread: a WAL commit that
  does not fsync costs less than the hop to aiosqlite's thread and back. At FULL (one fsync per
  commit) it runs on the writer's aiosqlite thread. `_writer_lock` keeps the two from ever
  using the writer connection at once.
- `commit_observer`, when set, is told once per batch, after it is settled: the cost of
  measuring is two clock reads per batch (its oldest append's queueing, its settling) and
  one call.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import Callable, Sequence
from time import perf_counter

import aiosqlite

from aura.projections.events import ENCODER, Event, Recorded
from aura.store.batch import BatchWriter, QueuedAppend, Results
from aura.store.checkpoint import Checkpoints
from aura.store.connections import on_thread, sqlite_connection
from aura.store.errors import StoreError, append_failed
from aura.store.subscriptions import Subscriptions

__all__ = ["MAX_BATCH_APPENDS", "CommitObserver", "GroupCommit"]

#: appends waiting at once beyond this are left for the next transaction
MAX_BATCH_APPENDS = 512

#: told of each settled batch: (its appends, seconds from its oldest append's queueing to its
#: settling: the longest any append of the batch waited, committed or failed); it must not raise
CommitObserver = Callable[[int, float], None]


class GroupCommit:
    """The appending side of an EventLog (which extends it, so that `append_nowait`, the hot
    path, stays one call): the queue, its flush batch by batch, and settling each append.

    :param writer: the writer connection; None for a read-only log, which refuses appends.
    :param commit_on_loop: commit on the event loop's thread (NORMAL durability, see INVARIANTS).
    """

    def __init__(
        self,
        writer: aiosqlite.Connection | None,
        subscriptions: Subscriptions,
        *,
        commit_on_loop: bool,
    ) -> None:
        self._writer = writer
        self._commit_on_loop = commit_on_loop
        self._writer_lock = asyncio.Lock()  # group commits and functions run on the writer
        self._batches = None if writer is None else BatchWriter(sqlite_connection(writer))
        self._checkpoints = Checkpoints(self._writer_lock)
        self._subscriptions = subscriptions
        self._pending: list[QueuedAppend] = []
        self._flush_due = False  # a flush is scheduled: a loop callback or the flusher task
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False  # close() has begun: appends are refused from then on
        self._oldest_queued = 0.0  # perf_counter() when the oldest pending append was queued
        #: told of each batch once settled (metrics); None: nothing is measured
        self.commit_observer: CommitObserver | None = None

    def append_nowait(
        self,
        job_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        after: QueuedAppend | None = None,
    ) -> QueuedAppend:
        """Queue the append for the next group commit and return it at once (await its future).

        Appends commit in the order they were queued, so a writer may queue its next append,
        expecting the version this one will reach, before this one has committed: passed as
        `after`, this one then commits only if that one did (else StoreError), even when
        another writer happened to bring the job to the expected version meanwhile.
        """
        if self._writer is None:
            raise StoreError("the log was opened read-only")
        if self._closing:
            raise StoreError("the log is closed")
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        encode = ENCODER.encode
        rows = []
        for e in events:  # a loop, not a comprehension: no frame per call (most carry one event)
            rows.append((type(e).__name__, e.step_name, e.attempt, encode(e).decode()))
        queued = QueuedAppend(job_id, expected_version, rows, events, future, after)
        if not events:
            future.set_result([])
            return queued
        pending = self._pending
        if not pending:  # the oldest of the next batch: one clock read per batch, not per append
            self._oldest_queued = perf_counter()
        pending.append(queued)
        if not self._flush_due:
            self._flush_due = True
            if self._commit_on_loop:  # in this loop turn, after every append made in it
                # a fresh context: the flush serves every appender, so it logs as none of them
                loop = asyncio.get_running_loop()
                loop.call_soon(self._flush_on_loop, context=contextvars.Context())
            else:
                self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        return queued

    async def _drain(self) -> None:
        """Refuse appends from now on and commit those queued so far."""
        self._closing = True
        if self._pending and self._commit_on_loop:
            self._flush_on_loop()  # now, not after the connections are gone
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    def _flush_on_loop(self) -> None:
        """At NORMAL durability: commit what is queued, on the loop's thread, now."""
        if self._writer_lock.locked():  # a function runs on the writer's thread: queue behind
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
            return
        self._flush_due = False
        # No garbage collection from the commit to the last frame written and future settled:
        # a collection its allocations make due runs right after, when nothing committed waits
        # for its readers (a collection can take as long as a few commits).
        collecting = gc.isenabled()
        gc.disable()
        try:
            while self._pending:
                queued_at = self._oldest_queued
                batch = self._take_batch()
                self._settle(batch, self._commit_batch(batch), queued_at)
        finally:
            if collecting:
                gc.enable()

    async def _flush(self) -> None:
        """At FULL durability (or behind a function on the writer's thread): commit what is
        queued, batch after batch, on the writer's thread."""
        assert self._writer is not None
        writer = self._writer
        try:
            while self._pending:
                queued_at = self._oldest_queued  # appends queued while this one commits: later
                batch = self._take_batch()
                async with self._writer_lock:
                    if self._commit_on_loop:
                        results = self._commit_batch(batch)
                    else:
                        try:
                            results = await on_thread(writer, self._commit_batch, batch)
                        except Exception as e:  # the connection itself failed: every one did
                            results = [append_failed(e)] * len(batch)
                self._settle(batch, results, queued_at)
        finally:
            self._flusher = None
            self._flush_due = False

    def _take_batch(self) -> list[QueuedAppend]:
        batch = self._pending[:MAX_BATCH_APPENDS]
        del self._pending[: len(batch)]
        return batch

    def _commit_batch(self, batch: list[QueuedAppend]) -> Results:
        """Commit the batch in one transaction; if that fails as a whole, each append alone,
        so only the one at fault fails. Each result: the append's records, or its error."""
        assert self._batches is not None
        try:
            return self._batches.write(batch)
        except Exception as e:
            if len(batch) == 1:
                return [e if isinstance(e, StoreError) else append_failed(e)]
        results: Results = []
        for item in batch:
            (result,) = self._commit_batch([item])
            item.failed = isinstance(result, Exception)  # for the appends chained after it
            results.append(result)
        return results

    def _settle(self, batch: list[QueuedAppend], results: Results, queued_at: float) -> None:
        """Notify who listens of what committed (their writes go out first: that is the
        latency clients see), then settle each append's future with its own result or error;
        `queued_at`: when the batch's oldest append was queued (for `commit_observer`)."""
        subscriptions = self._subscriptions
        if not subscriptions.idle:
            notify = subscriptions.notify
            for result in results:
                if not isinstance(result, Exception):
                    notify(result)
            subscriptions.commit_done()
        rows = 0
        for item, result in zip(batch, results, strict=True):
            # settled: nothing needs the chain behind it or its rows any more (a writer keeps
            # its last append until the next; what it holds lives on for the collector to walk)
            item.after = None
            item.rows = item.events = ()
            future = item.future
            if isinstance(result, Exception):
                item.failed = True
                if not future.done():
                    future.set_exception(result)
            else:
                rows += len(result)
                if not future.done():
                    future.set_result(result)
        self._checkpoints.count(rows)
        observer = self.commit_observer
        if observer is not None:
            observer(len(batch), perf_counter() - queued_at)
