"""Deleting the files of jobs that ended long ago (`aura compact --prune-outputs`), recorded in
the log as `OutputsPruned`, so the job's view says so (`outputPrunedUtc`).

Only a job's own work folder, `<data_dir>/jobs/<job id>/`, is deleted, and only when it is a
real folder (not a link) right inside the data folder's `jobs/`, of a job of this log: a file a
job recorded anywhere else is never touched, and links inside are removed, never followed.

The event is appended, durably, before the files go: a crash in between leaves a job that says
it was pruned with its folder still there, which the next run deletes. The other order could
leave a job whose view shows an output that is gone, with nothing left to say so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from aura.engine.config.settings import Settings
from aura.projections.compaction import ended_before_time
from aura.projections.events import OutputsPruned
from aura.projections.job import InvalidTransition, fold
from aura.store import CorruptEvent
from aura.store.interface import EventStore

__all__ = ["Pruned", "prune_outputs"]


class Pruned(NamedTuple):
    """What pruning deleted."""

    jobs: int
    files: int
    size_bytes: int


async def prune_outputs(log: EventStore, settings: Settings, ended_before: datetime) -> Pruned:
    """Delete the work folders of the jobs that ended before `ended_before`, appending
    `OutputsPruned` to each first. The caller holds the data folder's lock."""
    jobs = files = size = 0
    for job_id, folder in _job_folders(settings):
        try:
            state = fold(await log.read(job_id))
        except (InvalidTransition, CorruptEvent):
            continue  # a log this build cannot judge: its files stay
        if state is None or not ended_before_time(state, ended_before):
            continue  # no such job in this log, or not ended long enough ago
        if state.output_pruned_utc is None:
            count, total = await asyncio.to_thread(_measure, folder)
            event = OutputsPruned(files=count, size_bytes=total, attempt=state.attempt)
            await log.append(job_id, [event], state.version)
            jobs, files, size = jobs + 1, files + count, size + total
        await asyncio.to_thread(shutil.rmtree, folder)  # removes links, never follows them
    return Pruned(jobs, files, size)


def _job_folders(settings: Settings) -> list[tuple[str, Path]]:
    """(job id, folder) of each real folder right inside the data folder's `jobs/`."""
    jobs_dir = settings.jobs_dir
    if jobs_dir.is_symlink() or not jobs_dir.is_dir():
        return []
    root = jobs_dir.resolve()
    if not root.is_relative_to(settings.data_dir.resolve()):
        return []
    found = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            found.append((entry.name, root / entry.name))
    return found


def _measure(folder: Path) -> tuple[int, int]:
    """Files (links included, not followed) under `folder`, and their bytes."""
    count = total = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
            count += 1
    return count, total
