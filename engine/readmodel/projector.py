"""The job-list read model: attaches the `jobs` table's projection to the log and reads it.

The rows are written inside each append's own transaction (store.jobs_table.JobListProjection),
so a listing never lags the log and costs no extra write. Attaching first folds whatever the
table has not seen yet (a new table, or events written without it), so the table can be dropped
and rebuilt from the log at any time.
"""

from __future__ import annotations

from aura.projections.job import JobStatus
from aura.projections.job_list import JobRow
from aura.store.jobs_table import JobListProjection, JobPage, JobsTable, ListPosition
from aura.store.log import EventLog

__all__ = ["Projector"]


class Projector:
    """The job list of one EventLog."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._projection = JobListProjection()
        self.table = JobsTable(log, self._projection.name)
        self._attached = False

    async def start(self) -> None:
        """Catch the table up with the log, then keep it in every append's transaction."""
        await self._log.attach(self._projection)
        self._attached = True

    async def stop(self) -> None:
        if self._attached:
            self._attached = False
            await self._log.detach(self._projection)

    async def rebuild(self) -> None:
        """Drop the table and fold the whole log again."""
        await self.stop()
        await self.table.clear()
        self._projection.forget()
        await self.start()

    async def list_rows(
        self, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRow]:
        """Newest first (a page without its position)."""
        return (await self.table.page(status, limit, offset)).rows

    async def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        after: ListPosition | None = None,
    ) -> JobPage:
        """Newest first, past `offset` rows and after the position `after` (UnknownPosition if
        it names no row), with the log's last seq the rows are consistent with and where the
        next page starts."""
        return await self.table.page(status, limit, offset, after)

    def success_mark(self, preset: str) -> tuple[int, int]:
        """Changes whenever a job of the preset succeeds (see JobListProjection.mark)."""
        return self._projection.mark(preset)

    async def active_job_ids(self) -> list[str]:
        """Jobs the log shows as Queued or Running: read from the table, not by replay."""
        return await self.table.active_job_ids()
