"""Work that serves many requests and jobs (a group commit, a stream's pinger) logs as none of
them: a record it writes must not carry the ids of whichever request or job started it."""

from __future__ import annotations

from aura.engine.config.logs import CORRELATION_ID, JOB_ID, bind_job
from aura.projections.events import JobCreated
from aura.store.interface import EventStore


async def test_a_group_commit_runs_outside_the_context_of_the_append_that_started_it(
    log: EventStore,
) -> None:
    seen: list[tuple[str | None, str | None]] = []
    log.commit_observer = lambda appends, seconds: seen.append((JOB_ID.get(), CORRELATION_ID.get()))
    bind_job("job-a", "corr-a")  # the appender's context: a job's run
    created = JobCreated(preset="default", steps=("render",), correlation_id="corr-a")
    await log.append("job-a", [created], 0)
    assert (JOB_ID.get(), CORRELATION_ID.get()) == ("job-a", "corr-a")
    assert seen == [(None, None)]  # the commit: on the loop, or its own task (FULL, PostgreSQL)
