"""Keeps the job-list read model (`jobs` table) up to date with the log.

INVARIANTS
- The table's rows and the recorded position are saved in one transaction: after any crash the
  table equals the fold of the log up to that position, and catching up resumes from it.
- Records are applied in seq order, each once: the subscription starts after the saved position.
- Rows touched while a save is in flight are saved by the next one (group write, no timer).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib

from aura.projections.events import JobCreated, Recorded
from aura.projections.job import JobStatus
from aura.projections.job_list import JobRow, apply_row
from aura.store.jobs_table import JobsTable
from aura.store.log import EventLog

__all__ = ["Projector"]


class Projector:
    """Folds every appended event into its job's row and saves rows with the position."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.table = JobsTable(log)
        self._rows: dict[str, JobRow] = {}  # rows of jobs seen since start
        self._dirty: dict[str, JobRow] = {}
        self._applied = 0  # seq of the last record folded into _rows
        self._saved = 0  # position saved with the table
        self._saved_changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def start(self) -> None:
        """Resume from the saved position and follow the log until stop()."""
        self._saved = self._applied = await self.table.position()
        self._task = asyncio.create_task(self._follow(), name="projector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._saver is not None:
            await self._saver
        if self._dirty:
            await self._save()

    async def rebuild(self) -> None:
        """Drop the table and fold the whole log again."""
        await self.stop()
        await self.table.clear()
        self._rows.clear()
        self._dirty.clear()
        await self.start()
        await self.catch_up()

    async def catch_up(self) -> None:
        """Return once every event appended before this call is saved in the table."""
        target = self._log.last_seq
        async with self._saved_changed:
            await self._saved_changed.wait_for(
                lambda: self._saved >= target or self._error is not None
            )
        if self._error is not None:
            raise self._error

    async def list(
        self, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRow]:
        return await self.table.list(status, limit, offset)

    async def active_job_ids(self) -> builtins.list[str]:
        """Jobs the log shows as Queued or Running: read from the table, not by replay."""
        await self.catch_up()
        return await self.table.active_job_ids()

    async def _follow(self) -> None:
        async for rec in self._log.subscribe(after_seq=self._applied):
            await self._apply(rec)
            if self._saver is None:
                self._saver = asyncio.create_task(self._save_loop())
        # The log closed: nothing more will come.

    async def _apply(self, rec: Recorded) -> None:
        row = self._rows.get(rec.job_id)
        if row is None and not isinstance(rec.event, JobCreated):
            row = await self.table.get(rec.job_id)
        new = apply_row(row, rec)
        if new is not None:
            self._rows[rec.job_id] = new
            self._dirty[rec.job_id] = new
        self._applied = rec.seq

    async def _save_loop(self) -> None:
        try:
            # Yield once so records already buffered by the subscription join this save.
            await asyncio.sleep(0)
            while self._applied > self._saved:
                await self._save()
        finally:
            self._saver = None

    async def _save(self) -> None:
        rows, self._dirty = list(self._dirty.values()), {}
        position = self._applied
        try:
            await self.table.save(rows, position)
        except Exception as e:  # surfaced by catch_up(); the rows stay dirty for the next save
            self._dirty = {r.job_id: r for r in rows} | self._dirty
            async with self._saved_changed:
                self._error = e
                self._saved_changed.notify_all()
            raise
        async with self._saved_changed:
            self._saved = position
            self._error = None
            self._saved_changed.notify_all()
