"""The job list on PostgreSQL: the `jobs` rows that every process writes in its own appends'
transactions (store/pg/jobs_table.py), read with Projector's API.

INVARIANTS
- Nothing is folded here: no attach, no catch-up between group commits, no background rebuild
  (SQLite's Projector does those because its rows are written by this process alone).
  PgEventLog.open caught the rows up under the append lock, and every append since, of any
  process, writes its rows in its own transaction, so `rebuilding` is always False.
- That is checked, not assumed: `start` reads the rows' position and the log's last seq in one
  snapshot, and a list behind the log (its rows or position changed behind Aura's back) is
  rebuilt at once, under the append lock, with a warning, before anything reads it.
"""

from __future__ import annotations

import logging
import time

from aura.engine.readmodel.projector import Projector, RebuildProgress
from aura.projections.events import ErrorInfo
from aura.projections.job import JobStatus
from aura.projections.job_list import JobRow
from aura.store.interface import EventStore
from aura.store.jobs_table import JobPage, ListPosition
from aura.store.log import EventLog
from aura.store.pg.log import PgEventLog

__all__ = ["ESTIMATES_REFRESH_SECONDS", "ListProjector", "PgProjector", "projector_for"]

logger = logging.getLogger(__name__)

#: seconds a preset's typical step durations are kept (engine/readmodel/eta.py): jobs succeed
#: in other processes too, whose appends this one does not fold, so the mark is a clock
ESTIMATES_REFRESH_SECONDS = 10.0


class PgProjector:
    """The job list of one PgEventLog (see the module's invariants)."""

    def __init__(self, log: PgEventLog) -> None:
        self._log = log
        self.table = log.jobs_table

    @property
    def rebuilding(self) -> bool:
        return False

    def progress(self) -> RebuildProgress:
        return RebuildProgress(False, self._log.last_seq, 1.0)

    def problem(self) -> ErrorInfo | None:
        """Never: the rows are rebuilt at start, not in the background."""
        return None

    async def start(self) -> None:
        """Check that the rows hold every event of the log; rebuild them if they do not."""
        lag = await self.table.lag()
        if lag:
            logger.warning("the job list is %d events behind the log: rebuilding it", lag)
            await self.rebuild()

    async def wait_rebuilt(self) -> None:
        """Nothing to wait for: the rows are never rebuilt in the background."""

    async def stop(self) -> None:
        """Nothing to stop: the rows are written by the appends themselves."""

    async def rebuild(self) -> None:
        """Drop the rows and fold the whole log again, in one transaction holding the append
        lock (every process's appends wait for it)."""
        applied = await self._log.rebuild_job_list()
        logger.info("job list rebuilt from the log up to seq %d", applied)

    async def list_rows(
        self, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRow]:
        return (await self.page(status, limit, offset)).rows

    async def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        after: ListPosition | None = None,
    ) -> JobPage:
        return await self.table.page(status, limit, offset, after)

    def success_mark(self, preset: str) -> int:
        """Changes every ESTIMATES_REFRESH_SECONDS (see there)."""
        return int(time.monotonic() // ESTIMATES_REFRESH_SECONDS)

    async def active_job_ids(self) -> list[str]:
        return await self.table.active_job_ids()


#: the job list of either log
ListProjector = Projector | PgProjector


def projector_for(log: EventStore) -> ListProjector:
    """The job list of `log`: folded into each append's transaction by this process on SQLite,
    read from the rows every process writes on PostgreSQL."""
    if isinstance(log, PgEventLog):
        return PgProjector(log)
    assert isinstance(log, EventLog)
    return Projector(log)
