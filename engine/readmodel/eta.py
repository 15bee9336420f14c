"""Job ETAs from the typical step durations of each preset's recent Succeeded jobs.

The durations are read from the log once per preset and kept until another job of the preset
succeeds (the job-list projection counts them as it writes their rows): a job's ETA then costs
no read of the database, only the pure sum of projections.eta.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime

from aura.projections.eta import job_eta, typical_durations
from aura.projections.job import JobState
from aura.store.interface import JobList

__all__ = ["RECENT_JOBS", "StepEstimates"]

#: Succeeded jobs of a preset whose step durations make its typical durations
RECENT_JOBS = 20
#: presets whose durations are kept (there are two; a bound all the same)
_MAX_PRESETS = 64


class StepEstimates:
    """Typical step durations per preset; `mark(preset)` changes when they may have changed."""

    def __init__(self, table: JobList, mark: Callable[[str], Hashable]) -> None:
        self._table = table
        self._mark = mark
        self._cache: dict[str, tuple[Hashable, Mapping[str, float]]] = {}

    async def typical(self, preset: str) -> Mapping[str, float]:
        """The median duration of each step in the preset's RECENT_JOBS newest Succeeded jobs."""
        mark = self._mark(preset)  # before the read: a success during it reads again next time
        cached = self._cache.get(preset)
        if cached is not None and cached[0] == mark:
            return cached[1]
        samples = await self._table.recent_step_durations(preset, RECENT_JOBS)
        typical = typical_durations(samples)
        if len(self._cache) >= _MAX_PRESETS and preset not in self._cache:
            self._cache.clear()
        self._cache[preset] = (mark, typical)
        return typical

    async def eta(self, state: JobState) -> float | None:
        """The job's ETA in seconds (projections.eta.job_eta); None once it has ended."""
        if state.is_terminal:
            return None
        return job_eta(state, await self.typical(state.preset), datetime.now(UTC))
