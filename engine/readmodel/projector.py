"""The job-list read model: attaches the `jobs` table's projection to the log and reads it.

The rows are written inside each append's own transaction (store.jobs_table.JobListProjection),
so a listing never lags the log and costs no extra write. Attaching first folds whatever the
table has not seen yet (a new table, or events written without it), so the table can be dropped
and rebuilt from the log at any time.

INVARIANTS
- A table far behind the log (dropped by a migration, its position lost) is rebuilt in the
  background, page by page, each page a transaction on the writer between two group commits:
  the server answers meanwhile, and appends wait for one page at most. The last pages are folded
  by `EventLog.attach`, which attaches the projection in the same turn of the writer, so an event
  appended during the rebuild is folded by the rebuild or by its own append, never both or none.
- While rebuilding, the table holds the events up to the position saved with it (with every
  page), exactly so when the rebuild began from an empty table (a lost position empties it
  first), and a page of the list says so (`JobPage.rebuilding`, its `last_seq` that position).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

from aura.engine.errors.taxonomy import make_error
from aura.projections.events import ErrorInfo
from aura.projections.job import JobStatus
from aura.projections.job_list import JobRow
from aura.store.batch import catch_up_page
from aura.store.errors import StoreError
from aura.store.jobs_table import JobListProjection, JobPage, JobsTable, ListPosition
from aura.store.log import EventLog

__all__ = ["BACKGROUND_REBUILD_EVENTS", "REBUILD_PAGE", "Projector", "RebuildProgress"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: events the table may be behind the log for `start` to catch it up before returning (a normal
#: restart is at most jobs_table.POSITION_LAG behind); further behind, it is rebuilt in the
#: background
BACKGROUND_REBUILD_EVENTS = 10_000
#: events a background rebuild folds per transaction: an append waits for one page at most
REBUILD_PAGE = 2_000
#: seconds between tries of a page that failed (a database locked by another process, a full
#: disk): doubled up to the last
_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)


class _Stopped(Exception):
    """The projector stopped while a page of the rebuild was failing."""


class RebuildProgress(NamedTuple):
    """How far the job list is from the log."""

    rebuilding: bool
    #: the last seq the table holds (the log's last seq when it is not rebuilding)
    applied_seq: int
    #: the share of the events to fold done, 0 to 1
    progress: float


class Projector:
    """The job list of one EventLog.

    :param rebuild_page: events a background rebuild folds per transaction (REBUILD_PAGE).
    """

    def __init__(self, log: EventLog, *, rebuild_page: int | None = None) -> None:
        self._log = log
        self._projection = JobListProjection()
        self.table = JobsTable(log, self._projection.name)
        self._attached = False
        self._rebuild_page = REBUILD_PAGE if rebuild_page is None else rebuild_page
        self._rebuild: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._start_seq = 0  # the position a background rebuild started from
        self._applied = 0  # the position a background rebuild has reached
        #: a background rebuild failed (not for the log refusing: that is tried again)
        self.rebuild_failed = False

    @property
    def rebuilding(self) -> bool:
        """The table is being rebuilt in the background (`start` returned before it was done)."""
        return self._rebuild is not None and not self._attached

    def progress(self) -> RebuildProgress:
        last = self._log.last_seq
        if not self.rebuilding:
            return RebuildProgress(False, last, 1.0)
        done = (self._applied - self._start_seq) / max(1, last - self._start_seq)
        return RebuildProgress(True, self._applied, min(1.0, max(0.0, done)))

    async def start(self) -> None:
        """Catch the table up with the log, then keep it in every append's transaction. A table
        more than BACKGROUND_REBUILD_EVENTS behind is caught up in the background instead:
        `rebuilding` until done (`wait_rebuilt`)."""
        self._stopping.clear()
        self._rebuild = None
        position = await self.table.position()
        if self._log.last_seq - position <= BACKGROUND_REBUILD_EVENTS:
            await self._attach()
            return
        self._start_seq = self._applied = position
        self._rebuild = asyncio.create_task(self._catch_up(position), name="job-list rebuild")

    async def wait_rebuilt(self) -> None:
        """Return once the table is caught up with the log (or the projector stopped)."""
        if self._rebuild is not None:
            await asyncio.shield(self._rebuild)

    async def stop(self) -> None:
        self._stopping.set()
        await self.wait_rebuilt()  # the page under way ends: a page is never cut short
        if self._attached:
            self._attached = False
            await self._log.detach(self._projection)

    async def rebuild(self) -> None:
        """Drop the table and fold the whole log again (in the background if it is long)."""
        await self.stop()
        await self.table.clear()
        self._projection.forget()
        await self.start()

    async def _attach(self) -> None:
        await self._log.attach(self._projection)
        self._attached = True

    async def _catch_up(self, position: int) -> None:
        """Fold the log into the table page by page from `position`, then attach."""
        projection, stopping = self._projection, self._stopping
        projection.save_every_commit = True
        try:
            if position == 0:  # rows an earlier fold left would go back and forth meanwhile
                await self._retrying(self.table.clear)
            while not stopping.is_set() and self._log.last_seq - position > self._rebuild_page:
                page = functools.partial(
                    catch_up_page, projection=projection, after=position, limit=self._rebuild_page
                )
                applied = await self._retrying(functools.partial(self._log.run_on_writer, page))
                if applied is None:
                    break
                position = self._applied = applied
            if not stopping.is_set():
                await self._retrying(self._attach)  # the last pages, and every append from now
                logger.info("job list rebuilt from the log up to seq %d", self._log.last_seq)
        except _Stopped:
            pass
        except Exception:  # a task nobody awaits: say why; the list stays `rebuilding`
            self.rebuild_failed = True
            logger.exception("job list rebuild failed; it is tried again at the next start")
        finally:
            projection.save_every_commit = False

    def problem(self) -> ErrorInfo | None:
        """Why the job list is not whole for good, if it is not (health says it)."""
        if not self.rebuild_failed:
            return None
        return make_error(
            "Internal",
            "the job list could not be rebuilt from the log: GET /api/jobs holds part of it, "
            "and the jobs a crash interrupted resume at the next start",
            remediation="Restart the server; if the rebuild fails again, report it with the "
            "server's log (its ERROR record says why).",
        )

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, tried again after each StoreError (logged) until it succeeds; _Stopped
        when the projector stops meanwhile."""
        delays = iter(_RETRY_DELAYS)
        while True:
            try:
                return await attempt()
            except StoreError as e:
                delay = next(delays, _RETRY_DELAYS[-1])
                logger.warning("job list rebuild: %s; trying again in %.1f s", e, delay)
            with contextlib.suppress(TimeoutError):  # not wait_for: it can lose a cancel (3.11)
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if self._stopping.is_set():
                raise _Stopped

    async def list_rows(
        self, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRow]:
        """Newest first (a page without its position)."""
        return (await self.page(status, limit, offset)).rows

    async def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        after: ListPosition | None = None,
    ) -> JobPage:
        """Newest first, past `offset` rows and after the position `after` (UnknownPosition if
        it names no row), with the log's last seq the rows are consistent with and where the
        next page starts; while `rebuilding`, flagged so, and consistent with the position the
        rebuild has reached."""
        return await self.table.page(status, limit, offset, after, rebuilding=self.rebuilding)

    def success_mark(self, preset: str) -> tuple[int, int]:
        """Changes whenever a job of the preset succeeds (see JobListProjection.mark)."""
        return self._projection.mark(preset)

    async def active_job_ids(self) -> list[str]:
        """Jobs the log shows as Queued or Running: read from the table, not by replay (call it
        once the table is caught up: `wait_rebuilt`)."""
        return await self.table.active_job_ids()
