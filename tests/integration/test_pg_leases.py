"""Job leases on PostgreSQL (store/pg/leases.py): concurrent claimers in separate processes take
disjoint jobs, an expired lease passes to another worker with a higher token, the old holder's
renewal and fenced appends are refused, release, and the fence's order against a claim."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import asyncpg
import pytest

from aura.projections.events import (
    ErrorInfo,
    Event,
    JobCreated,
    JobFailed,
    JobRetryRequested,
    JobStarted,
    StepFailed,
    StepProgressed,
    StepStarted,
)
from aura.store.errors import ConcurrencyError, LeaseLost, StoreError
from aura.store.pg.batch import CHANNEL, NEWS, LeaseTake
from aura.store.pg.leases import Lease, PgLeases
from aura.store.pg.log import PgEventLog
from aura.tests.e2e.raw_http import clean_env
from aura.tests.job_logs import succeeded
from aura.tests.lease_claimer import LEASE_SECONDS

TIMEOUT = 60.0
QUEUED_JOBS = 30


def created() -> JobCreated:
    return JobCreated(preset="sample-hello-youtube", steps=("mux",), correlation_id="c")


async def queued_jobs(log: PgEventLog, count: int) -> list[str]:
    """`count` new Queued jobs, created one after another (so their age order is known)."""
    job_ids = []
    for _ in range(count):
        job_id = str(uuid.uuid4())
        await log.append(job_id, [created()], 0)
        job_ids.append(job_id)
    return job_ids


async def sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def expire(url: str, job_id: str) -> None:
    """End the job's lease now, as the database's clock says (no waiting for it)."""
    await sql(url, "UPDATE job_leases SET expires_at = now() WHERE job_id = $1", job_id)


async def test_concurrent_claimers_in_three_processes_never_claim_a_job_twice(
    pg_url: str,
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        job_ids = await queued_jobs(log, QUEUED_JOBS)
    claimers = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "aura.tests.lease_claimer", pg_url, f"w{i}", str(limit)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=clean_env(),
        )
        for i, limit in enumerate((1, 1, 3))
    ]
    try:
        async with asyncio.timeout(TIMEOUT):
            for claimer in claimers:  # every one has opened the log before any claims
                assert claimer.stdout is not None
                assert await claimer.stdout.readline() == b"ready\n"
            for claimer in claimers:
                assert claimer.stdin is not None
                claimer.stdin.write(b"go\n")
            outputs = await asyncio.gather(*(claimer.communicate() for claimer in claimers))
    finally:
        for claimer in claimers:
            if claimer.returncode is None:
                claimer.kill()
                await claimer.wait()
    claimed = {f"w{i}": json.loads(out) for i, (out, _) in enumerate(outputs)}
    assert all(claimer.returncode == 0 for claimer in claimers)
    every_claim = [job_id for found in claimed.values() for job_id, _ in found]
    assert sorted(every_claim) == sorted(job_ids)  # each job once, none left out
    assert {token for found in claimed.values() for _, token in found} == {1}
    for found in claimed.values():  # each claimer's own claims come oldest first
        assert [j for j, _ in found] == sorted((j for j, _ in found), key=job_ids.index)
    held = await sql(pg_url, "SELECT job_id, worker_id FROM job_leases")
    assert {r["job_id"]: r["worker_id"] for r in held} == {
        job_id: worker for worker, found in claimed.items() for job_id, _ in found
    }


async def test_a_held_lease_is_not_claimable_and_its_holder_renews_it(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        older, newer = await queued_jobs(log, 2)
        leases = log.leases
        assert await leases.claim("a", LEASE_SECONDS, 1) == [Lease(older, 1)]
        assert await leases.claim("b", LEASE_SECONDS, 10) == [Lease(newer, 1)]
        assert await leases.claim("c", LEASE_SECONDS, 10) == []
        before = await sql(pg_url, "SELECT expires_at FROM job_leases WHERE job_id = $1", older)
        assert await leases.renew("a", older, 1, 2 * LEASE_SECONDS)
        after = await sql(pg_url, "SELECT expires_at FROM job_leases WHERE job_id = $1", older)
        assert after[0][0] > before[0][0]
        assert not await leases.renew("b", older, 1, LEASE_SECONDS)  # not b's lease
        assert not await leases.renew("a", older, 2, LEASE_SECONDS)  # no such token
        assert await leases.claim("c", LEASE_SECONDS, 10) == []


async def test_an_expired_lease_passes_to_another_worker_and_fences_out_the_old_holder(
    pg_url: str,
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        (job_id,) = await queued_jobs(log, 1)
        leases = log.leases
        (first,) = await leases.claim("a", 0.05, 10)  # a short lease: a dies, say
        await log.append(job_id, [JobStarted()], 1, fence=first)
        expiry = await sql(pg_url, "SELECT expires_at FROM job_leases WHERE job_id = $1", job_id)
        await sql(pg_url, "SELECT pg_sleep_until($1)", expiry[0][0])  # the database's clock
        (second,) = await leases.claim("b", LEASE_SECONDS, 10)
        assert second == Lease(job_id, first.token + 1)
        assert not await leases.renew("a", job_id, first.token, LEASE_SECONDS)
        with pytest.raises(LeaseLost) as lost:
            await log.append(job_id, [JobStarted()], 2, fence=first)
        assert (lost.value.job_id, lost.value.token) == (job_id, first.token)
        await log.append(job_id, [JobStarted()], 2, fence=second)  # the new holder's goes in
        assert [r.version for r in await log.read(job_id)] == [1, 2, 3]
        assert not await leases.release("a", job_id, first.token)
        assert await leases.claim("c", LEASE_SECONDS, 10) == []  # b still holds it
        with pytest.raises(ValueError, match="fence"):
            log.append(job_id, [JobStarted()], 3, fence=Lease("another", second.token))


async def test_only_the_stale_append_of_a_group_commit_is_refused(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        stale_job, live_job, free_job = await queued_jobs(log, 3)
        leases = log.leases
        stale, live = await leases.claim("a", LEASE_SECONDS, 2)
        await expire(pg_url, stale_job)
        assert await leases.claim("b", LEASE_SECONDS, 1) == [Lease(stale_job, 2)]
        # queued in one tick: one batch, which the stale fence rolls back as a whole
        appends = [
            log.append(stale_job, [JobStarted()], 1, fence=stale),
            log.append(live_job, [JobStarted()], 1, fence=live),
            log.append(free_job, [JobStarted()], 1),  # no lease: an API's request, say
        ]
        results = await asyncio.gather(*appends, return_exceptions=True)
        assert isinstance(results[0], LeaseLost)
        assert [len(await log.read(j)) for j in (stale_job, live_job, free_job)] == [1, 2, 2]
        row = await log.jobs_table.get(stale_job)
        assert row is not None and row.status.value == "Queued"  # its row was rolled back too


async def test_release_makes_a_job_claimable_again_only_while_queued_or_interrupted(
    pg_url: str,
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        queued, interrupted, done = await queued_jobs(log, 3)
        leases = log.leases
        held = await leases.claim("a", LEASE_SECONDS, 10)
        assert [lease.job_id for lease in held] == [queued, interrupted, done]
        fences = {lease.job_id: lease for lease in held}
        await log.append(interrupted, [JobStarted()], 1, fence=fences[interrupted])
        rest: list[Event] = succeeded()[1:]
        await log.append(done, rest, 1, fence=fences[done])
        assert not await leases.release("a", queued, 2)  # a token it does not hold
        assert await leases.claim("b", LEASE_SECONDS, 10) == []
        # the append that ended `done` gave its lease up in its own commit
        assert not await leases.release("a", done, fences[done].token)
        for job_id in (queued, interrupted):  # a stops cleanly: `interrupted` stays Running
            assert await leases.release("a", job_id, fences[job_id].token)
        assert not await leases.renew("a", queued, 1, LEASE_SECONDS)  # released is lost
        assert await leases.claim("b", LEASE_SECONDS, 10) == [
            Lease(queued, 2),
            Lease(interrupted, 2),
        ]
        with pytest.raises(LeaseLost):  # a released lease fences too
            await log.append(done, [JobStarted()], len(rest) + 1, fence=fences[done])


async def test_the_append_that_ends_a_job_gives_its_lease_up_and_a_retry_is_claimable_at_once(
    pg_url: str,
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        (job_id,) = await queued_jobs(log, 1)
        (lease,) = await log.leases.claim("a", LEASE_SECONDS, 1)
        running = [JobStarted(), StepStarted(step="mux")]
        await log.append(job_id, running, 1, fence=lease)
        assert await log.leases.renew("a", job_id, lease.token, LEASE_SECONDS)  # still held
        error = ErrorInfo(code="FFmpegFailedExitCode:1", message="failed", remediation="retry")
        ended = [StepFailed(step="mux", error=error), JobFailed(error=error)]
        await log.append(job_id, ended, 3, fence=lease)
        assert not await log.leases.renew("a", job_id, lease.token, LEASE_SECONDS)
        held = await sql(pg_url, "SELECT worker_id FROM job_leases WHERE job_id = $1", job_id)
        assert held[0]["worker_id"] is None
        await log.append(job_id, [JobRetryRequested(attempt=2, from_step="mux")], 5)
        # no lease to wait out: another worker takes the retry with the next token
        assert await log.leases.claim("b", LEASE_SECONDS, 1) == [Lease(job_id, 2)]


async def test_a_creation_takes_its_job_s_first_lease_in_its_commit_or_not_at_all(
    pg_url: str,
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        take = LeaseTake("a", LEASE_SECONDS)
        job_id = str(uuid.uuid4())
        other = str(uuid.uuid4())
        # in one batch with an append that takes nothing
        await asyncio.gather(
            log.append(job_id, [created()], 0, take=take), log.append(other, [created()], 0)
        )
        assert await log.leases.renew("a", job_id, 1, LEASE_SECONDS)  # held, token 1
        assert await log.leases.claim("b", LEASE_SECONDS, 10) == [Lease(other, 1)]
        await log.append(job_id, [JobStarted()], 1, fence=Lease(job_id, 1))
        with pytest.raises(ConcurrencyError):  # the job exists: nothing is taken either
            await log.append(job_id, [created()], 0, take=LeaseTake("b", LEASE_SECONDS))
        assert await log.leases.renew("a", job_id, 1, LEASE_SECONDS)
        with pytest.raises(ValueError, match="creates"):  # only a creation takes a lease
            log.append(job_id, [JobStarted()], 2, take=take)
        assert len(await sql(pg_url, "SELECT FROM job_leases")) == 2


async def test_only_a_job_that_no_worker_took_is_news_in_the_commit_s_notify(
    pg_url: str,
) -> None:
    payloads: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(pg_url)
    try:
        await listener.add_listener(CHANNEL, lambda *args: payloads.put_nowait(args[3]))
        async with await PgEventLog.open(pg_url) as log:
            taken, free = str(uuid.uuid4()), str(uuid.uuid4())
            await log.append(taken, [created()], 0, take=LeaseTake("a", LEASE_SECONDS))
            await log.append(free, [created()], 0)  # the workers claim this one
            await log.append(taken, [JobStarted()], 1, fence=Lease(taken, 1))
            async with asyncio.timeout(TIMEOUT):
                news = [(await payloads.get()).endswith(NEWS) for _ in range(3)]
    finally:
        await listener.close()
    assert news == [False, True, False]


@pytest.mark.parametrize(
    "event",
    [JobStarted(attempt=2), StepProgressed(step="mux", pct=10.0)],
    ids=["changing-the-job-row", "leaving-the-job-row"],
)
async def test_a_stale_fenced_append_waits_for_a_claim_in_flight_then_is_refused(
    pg_url: str, event: Event
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        (job_id,) = await queued_jobs(log, 1)
        (first,) = await log.leases.claim("a", LEASE_SECONDS, 10)
        await log.append(job_id, [JobStarted()], 1, fence=first)
        await expire(pg_url, job_id)
        conn = await asyncpg.connect(pg_url)
        try:
            claim = conn.transaction()
            await claim.start()  # b's claim, written but not committed yet
            assert await PgLeases(conn).claim("b", LEASE_SECONDS, 10) == [Lease(job_id, 2)]
            # the job's row (JobStarted) or its lease row (a progress tick) is what it waits on
            append = log.append(job_id, [event], 2, fence=first)
            await waiting_on_a_lock(pg_url, append)
            await claim.commit()
            with pytest.raises(LeaseLost):
                await asyncio.wait_for(append, TIMEOUT)
        finally:
            await conn.close()
        assert len(await log.read(job_id)) == 2


async def test_a_renewal_committed_while_a_claim_waits_keeps_the_lease(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        (job_id,) = await queued_jobs(log, 1)
        await log.leases.claim("a", LEASE_SECONDS, 10)
        await expire(pg_url, job_id)
        conn = await asyncpg.connect(pg_url)
        try:
            renewal = conn.transaction()
            await renewal.start()  # a's heartbeat, written but not committed yet
            assert await PgLeases(conn).renew("a", job_id, 1, LEASE_SECONDS)
            claim = asyncio.ensure_future(log.leases.claim("b", LEASE_SECONDS, 10))
            await waiting_on_a_lock(pg_url, claim)  # b took the lease for expired, and waits
            await renewal.commit()
            assert await asyncio.wait_for(claim, TIMEOUT) == []
        finally:
            await conn.close()
        assert await log.leases.renew("a", job_id, 1, LEASE_SECONDS)


async def waiting_on_a_lock(url: str, waiter: asyncio.Future[Any]) -> None:
    """Return once some backend of the database waits for a lock; fails if `waiter` ends
    first (it did not wait)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(TIMEOUT):
        while not (await sql(url, query))[0][0]:
            assert not waiter.done(), f"it did not wait: {waiter}"
            await asyncio.sleep(0.01)


async def test_the_database_refuses_to_delete_a_lease(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        (job_id,) = await queued_jobs(log, 1)
        await log.leases.claim("a", LEASE_SECONDS, 1)
    for statement in ("DELETE FROM job_leases", "TRUNCATE job_leases"):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="never deleted"):
            await sql(pg_url, statement)
    assert len(await sql(pg_url, "SELECT FROM job_leases WHERE job_id = $1", job_id)) == 1


async def test_a_claim_on_a_closed_pool_is_a_store_error(pg_url: str) -> None:
    log = await PgEventLog.open(pg_url)
    leases = log.leases
    await log.close()
    with pytest.raises(StoreError, match="lease"):
        await leases.claim("a", LEASE_SECONDS, 1)
