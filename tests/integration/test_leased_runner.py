"""The runner on PostgreSQL (engine/run/leased_runner.py): a worker whose lease another worker
took stops the job's processes and appends nothing more, whether it learns so from a refused
renewal or from a refused append; a claimed job the log shows Running is resumed; a job created
with a slot free is taken in its creation's commit and released by the append that ends it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aura.engine.config.inputs import JobRequest, Options
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import AuraError
from aura.engine.run.context import Step, StepContext
from aura.engine.run.leased_runner import LeasedRunner
from aura.projections.events import Artifact
from aura.store.pg.leases import Claimed, PgLeases
from aura.tests.runner_support import (
    child_pids,
    gate_step,
    is_type,
    pipeline,
    settings_for,
    sleep_step,
    until,
    wait_for,
    wait_gone,
)

DRAFT = JobRequest(options=Options(quality="draft"))
EXPIRE = "UPDATE job_leases SET expires_at = now() - interval '1 second' WHERE job_id = $1"


async def steal(pg_url: str, job_id: str) -> int:
    """Expire the job's lease and claim it as another worker; the new token."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(EXPIRE, job_id)
        (lease,) = await PgLeases(conn).claim("thief", 300, 10)
    finally:
        await conn.close()
    assert lease.job_id == job_id
    return lease.token


async def open_worker(tmp_path: Path, pg_url: str, lease_seconds: float, **steps: object) -> Engine:
    settings = settings_for(tmp_path, database_url=pg_url, lease_seconds=lease_seconds)
    engine = await Engine.open(settings, pipeline=pipeline(**steps))  # type: ignore[arg-type]
    assert isinstance(engine.runner, LeasedRunner)
    return engine


async def test_a_refused_renewal_stops_the_jobs_process_and_nothing_more_is_appended(
    tmp_path: Path, pg_url: str
) -> None:
    async with await open_worker(tmp_path, pg_url, 1.5, broll=sleep_step(60)) as engine:
        job = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, job, is_type("StepStarted", "broll"))  # type: ignore[arg-type]
        await until(lambda: child_pids("sleep"))
        sleeping = child_pids("sleep")
        before = await engine.log.read(job)
        assert await steal(pg_url, job) == 2
        # the heartbeat finds the lease taken (the engine runs on this loop: wait in a thread)
        assert not await asyncio.to_thread(wait_gone, sleeping)
        await until(lambda: engine.runner.run_for(job) is None)
        assert job not in engine.runner.held_job_ids  # type: ignore[attr-defined]
        assert await engine.log.read(job) == before


async def test_a_refused_append_stops_the_run_and_a_resumed_job_reuses_its_steps(
    tmp_path: Path, pg_url: str
) -> None:
    gates: dict[str, asyncio.Event] = {}
    async with await open_worker(tmp_path, pg_url, 300, broll=gate_step(gates)) as engine:
        job = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, job, is_type("StepStarted", "broll"))  # type: ignore[arg-type]
        before = await engine.log.read(job)
        await steal(pg_url, job)
        gates[job].set()  # the step ends: its StepSucceeded is refused (LeaseLost)
        await until(lambda: engine.runner.run_for(job) is None)
        assert await engine.log.read(job) == before
    # the thief "dies": once its lease expires, a worker claims the job and resumes it
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(EXPIRE, job)
    finally:
        await conn.close()
    async with await open_worker(tmp_path, pg_url, 300) as engine:
        await wait_for(engine.log, job, is_type("JobSucceeded"))  # type: ignore[arg-type]
        types = [(type(r.event).__name__, r.event.step_name) for r in await engine.log.read(job)]
    resumed = types[types.index(("JobInterrupted", "broll")) :]
    assert ("StepSkipped", "narration") in resumed and ("StepStarted", "broll") in resumed


async def test_the_heartbeat_keeps_a_job_longer_than_its_lease(tmp_path: Path, pg_url: str) -> None:
    async with await open_worker(tmp_path, pg_url, 0.9, broll=sleep_step(2.5)) as engine:
        job = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, job, is_type("JobSucceeded"))  # type: ignore[arg-type]
        types = [type(r.event).__name__ for r in await engine.log.read(job)]
    assert "JobInterrupted" not in types and types.count("StepStarted") == 5, types


async def test_a_stop_that_comes_as_the_claim_loop_wakes_still_stops_it(
    tmp_path: Path, pg_url: str
) -> None:
    engine = await open_worker(tmp_path, pg_url, 300)
    try:
        runner = engine.runner
        assert isinstance(runner, LeasedRunner)
        claims = next(t for t in runner._background if t.get_name() == "lease claims")
        waiters = runner._wake._waiters  # asyncio.Event keeps them here
        await until(lambda: bool(waiters))  # the loop waits for a wake-up
        runner._wake.set()  # a run ends (it wakes the loop) ...
        claims.cancel()  # ... as the runner stops: the same loop turn
        done, _ = await asyncio.wait({claims}, timeout=5)
        assert done == {claims} and claims.cancelled()  # asyncio.wait_for lost this cancel
    finally:
        await engine.close()


async def lease_row(pg_url: str, job_id: str) -> tuple[str | None, int] | None:
    """The job's lease row: (its holder, its token), or None when it has none."""
    conn = await asyncpg.connect(pg_url)
    try:
        row = await conn.fetchrow(
            "SELECT worker_id, token FROM job_leases WHERE job_id = $1", job_id
        )
    finally:
        await conn.close()
    return None if row is None else (row["worker_id"], row["token"])


async def test_a_job_created_with_a_slot_free_is_taken_at_creation_and_released_by_its_end(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimed: list[str] = []
    releases: list[str] = []
    claim_and_look, release = PgLeases.claim_and_look, PgLeases.release

    async def recorded_claim(self: PgLeases, *args: Any) -> Claimed:
        found = await claim_and_look(self, *args)
        claimed.extend(lease.job_id for lease in found.leases)
        return found

    async def recorded_release(self: PgLeases, worker_id: str, job_id: str, token: int) -> bool:
        releases.append(job_id)
        return await release(self, worker_id, job_id, token)

    monkeypatch.setattr(PgLeases, "claim_and_look", recorded_claim)
    monkeypatch.setattr(PgLeases, "release", recorded_release)
    gates: dict[str, asyncio.Event] = {}
    async with await open_worker(tmp_path, pg_url, 300, broll=gate_step(gates)) as engine:
        runner = engine.runner
        assert isinstance(runner, LeasedRunner) and engine.settings.max_concurrent_jobs == 1
        first = (await engine.submit(DRAFT)).job.job_id
        # held as the submit returns, by this worker, with the first token: no claim took it
        assert await lease_row(pg_url, first) == (runner.worker_id, 1)
        # the only slot is taken: the next job's creation takes no lease; it waits for a claim
        second = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, first, is_type("StepStarted", "broll"))  # type: ignore[arg-type]
        assert await lease_row(pg_url, second) is None
        gates[first].set()
        await wait_for(engine.log, first, is_type("JobSucceeded"))  # type: ignore[arg-type]
        # the slot freed with a job waiting: a claim takes it, and its run starts
        await wait_for(engine.log, second, is_type("StepStarted", "broll"))  # type: ignore[arg-type]
        assert await lease_row(pg_url, first) == (None, 1)  # released by JobSucceeded's commit
        assert await lease_row(pg_url, second) == (runner.worker_id, 1)
        gates[second].set()
        await wait_for(engine.log, second, is_type("JobSucceeded"))  # type: ignore[arg-type]
        await until(lambda: not runner.held_job_ids)
    assert claimed == [second]
    assert releases == []  # each run's end released its lease in its terminal append


async def test_an_engine_opened_without_recovery_runs_only_the_jobs_it_creates(
    tmp_path: Path, pg_url: str
) -> None:
    # `aura sample` on PostgreSQL: a job queued by someone else is left to the workers
    api_settings = settings_for(tmp_path / "api", database_url=pg_url, runs_jobs=False)
    async with await Engine.open(api_settings, pipeline=pipeline()) as api:  # --no-worker
        queued = (await api.submit(DRAFT)).job.job_id
    settings = settings_for(tmp_path / "sample", database_url=pg_url, lease_seconds=300)
    async with await Engine.open(settings, pipeline=pipeline(), recover=False) as engine:
        mine = (await engine.submit(DRAFT)).job.job_id
        await wait_for(engine.log, mine, is_type("JobSucceeded"))  # type: ignore[arg-type]
        assert (await engine.get(queued)).status == "Queued"
    assert await lease_row(pg_url, queued) is None


async def test_a_worker_claims_a_job_another_process_creates_or_retries_as_its_notify_comes(
    tmp_path: Path, pg_url: str
) -> None:
    # a 300 s lease: the claim loop's own timer (every 100 s) would come far too late
    async with await open_worker(tmp_path / "worker", pg_url, 300, broll=failing_once()) as worker:
        api_settings = settings_for(tmp_path / "api", database_url=pg_url, runs_jobs=False)
        async with await Engine.open(api_settings, pipeline=pipeline()) as api:
            job = (await api.submit(DRAFT)).job.job_id
            await wait_for(api.log, job, is_type("JobFailed"))  # type: ignore[arg-type]
            await api.retry(job)
            await wait_for(api.log, job, is_type("JobSucceeded"))  # type: ignore[arg-type]
        # it learnt of both from the commits' NOTIFY alone: it follows no stream of the log
        assert worker.log.subscriber_count == 0


def failing_once() -> Step:
    """Fails the job's first attempt, succeeds in the next."""

    async def step(ctx: StepContext) -> list[Artifact]:
        if ctx.attempt == 1:
            raise AuraError.of("FFmpegFailedExitCode:1", "the test step failed on purpose")
        return []

    return step
