"""Crash recovery at start-up: find the jobs the log shows as active and put them back to work.

The active jobs come from the job-list read model (`Projector.active_job_ids`, caught up with
the log), so start-up reads only those jobs' events, however long the history. A job found
Running was interrupted: it gets `JobInterrupted` and is resumed, its finished steps reused as in
a retry (or it fails with `Interrupted` when settings.on_interrupted is "fail"). A Queued job is
queued again. Temp files a killed writer left in the job's folder are removed first, and no
process of the previous engine can still be writing there: the step helper gives every child a
parent-death signal.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aura.engine.config.settings import Settings
from aura.engine.files.job_files import remove_temp_files
from aura.engine.readmodel.pg_projector import ListProjector
from aura.engine.run.decide import decide_recovery
from aura.engine.run.runner import Runner
from aura.engine.run.transact import transact
from aura.projections.job import JobState, JobStatus
from aura.store.errors import CorruptEvent
from aura.store.interface import EventStore

__all__ = ["recover", "recover_job"]

logger = logging.getLogger(__name__)


async def recover(
    log: EventStore, projector: ListProjector, settings: Settings, runner: Runner
) -> list[str]:
    """Recover every active job, queueing the resumable ones in submission order. A job this
    runner already holds (submitted while the job list was being rebuilt) is not recovered.

    Returns the ids of the jobs queued again.
    """
    active = await projector.active_job_ids()
    held = set(runner.queued_job_ids)
    job_ids = [j for j in active if j not in held and runner.run_for(j) is None]
    states = await asyncio.gather(*(recover_job(log, settings, job_id) for job_id in job_ids))
    queued = [s.job_id for s in states if s is not None and s.status is JobStatus.QUEUED]
    for job_id in queued:
        runner.enqueue(job_id)
    return queued


async def recover_job(log: EventStore, settings: Settings, job_id: str) -> JobState | None:
    """Append what start-up means for one job (JobInterrupted, ...) and clean its folder. A job
    whose log does not decode is left as it is (named in the log): the others still start."""
    decide = functools.partial(decide_recovery, on_interrupted=settings.on_interrupted)
    try:
        done = await transact(log, job_id, decide)
    except CorruptEvent as e:  # its events do not decode
        logger.error("job %s cannot be recovered: %s", job_id, e)
        return None
    if done is None:
        return None
    if done.events:
        names = ", ".join(type(e).__name__ for e in done.events)
        logger.info("job %s: %s", job_id, names)
    removed = await asyncio.to_thread(remove_temp_files, settings.job_dir(job_id))
    if removed:
        logger.info("job %s: removed %d orphaned temp file(s)", job_id, len(removed))
    return done.after
