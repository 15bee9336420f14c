"""Job leases on PostgreSQL: which worker runs each job, until when, and the fencing token that
its appends carry, so that workers on several machines never run one job at once.

INVARIANTS
- A job is held by at most one worker. `claim` takes the job-list rows it claims with `FOR NO KEY
  UPDATE SKIP LOCKED`, so concurrent claimers take disjoint jobs without waiting on each other,
  and its upsert takes a lease only while the row is free (released, or expired) on the row's
  latest version, so a renewal committed meanwhile wins.
- Tokens only grow: a job's first lease is token 1 (taken by a claim, or by the worker that
  creates the job in the creation's commit: `take`, store/pg/batch.py), each later claim adds
  one, and a lease row is released, never deleted (the schema refuses DELETE), so a token is
  never handed out twice for a job.
- Fencing: an append carrying a lease commits only while its token is the job's current one
  (`aura_append_leased`, store/pg/schema.py). It locks the lease row after writing the job-list
  rows (the order a claim locks them in), so a claim commits either before it (the append is
  refused: LeaseLost) or after its events (the new holder reads them). The fenced append that
  ends its job releases the lease in its commit.
- Time is the database's: a lease expires at `now() + lease_seconds` and is compared with
  `now()`; the workers' clocks play no part.
- Claimable: a Queued job, or a Running one (its runner stopped or died: interrupted) that no
  live lease holds. Every process that runs jobs on PostgreSQL must claim them.
"""

from __future__ import annotations

from typing import NamedTuple

import asyncpg

from aura.projections.status import ACTIVE_JOB_STATUSES
from aura.store.pg.errors import DB_ERRORS, store_error

__all__ = ["CLAIMABLE_STATUSES", "FIRST_TOKEN", "Claimed", "Lease", "PgLeases"]

#: the token of a job's first lease (a claim's, or the one its creator takes)
FIRST_TOKEN = 1
#: the job-list statuses a claim takes, when no live lease holds the job
CLAIMABLE_STATUSES = sorted(status.value for status in ACTIVE_JOB_STATUSES)

# Candidates oldest first; the leases are written in job_id order, the order a fenced append
# locks them in (store/pg/schema.py), so the two never wait on each other in a cycle.
_CLAIM = """
WITH candidates AS (
    SELECT j.job_id, j.created_utc, j.created_seq FROM jobs AS j
    WHERE j.status = any($4::text[]) AND NOT EXISTS (
        SELECT FROM job_leases AS l
        WHERE l.job_id = j.job_id AND l.worker_id IS NOT NULL AND l.expires_at > now()
    )
    ORDER BY j.created_utc, j.created_seq
    LIMIT $3
    FOR NO KEY UPDATE OF j SKIP LOCKED
), claimed AS (
    INSERT INTO job_leases AS l (job_id, worker_id, token, expires_at)
    SELECT job_id, $1, FIRST_TOKEN, now() + make_interval(secs => $2)
    FROM candidates ORDER BY job_id
    ON CONFLICT (job_id) DO UPDATE
        SET worker_id = excluded.worker_id, token = l.token + 1, expires_at = excluded.expires_at
        WHERE l.worker_id IS NULL OR l.expires_at <= now()
    RETURNING l.job_id, l.token
)
SELECT c.job_id, c.token, EXISTS (
    SELECT FROM jobs AS j
    WHERE j.status = any($4::text[]) AND j.job_id NOT IN (SELECT job_id FROM candidates)
    AND NOT EXISTS (
        SELECT FROM job_leases AS l
        WHERE l.job_id = j.job_id AND l.worker_id IS NOT NULL AND l.expires_at > now()
    )
) AS more
FROM claimed AS c JOIN candidates USING (job_id)
ORDER BY candidates.created_utc, candidates.created_seq
""".replace("FIRST_TOKEN", str(FIRST_TOKEN))
_RENEW = (
    "UPDATE job_leases SET expires_at = now() + make_interval(secs => $4) "
    "WHERE job_id = $2 AND token = $3 AND worker_id = $1 RETURNING true"
)
_RELEASE = (
    "UPDATE job_leases SET worker_id = NULL, expires_at = now() "
    "WHERE job_id = $2 AND token = $3 AND worker_id = $1 RETURNING true"
)
_RELEASE_ALL = (
    "UPDATE job_leases SET worker_id = NULL, expires_at = now() "
    "WHERE worker_id = $1 RETURNING job_id"
)


class Lease(NamedTuple):
    """A job held by a worker: `token` fences its appends (PgEventLog.append's `fence`)."""

    job_id: str
    token: int


class Claimed(NamedTuple):
    """What a claim took, and whether claimable jobs were left that it did not take."""

    leases: list[Lease]
    more: bool


class PgLeases:
    """Claims, renews and releases job leases, each in one statement: its own transaction on
    a pool, or the caller's on a connection."""

    def __init__(self, db: asyncpg.Pool | asyncpg.Connection) -> None:
        self._db = db

    async def claim(self, worker_id: str, lease_seconds: float, limit: int) -> list[Lease]:
        """Take up to `limit` claimable jobs, oldest first, for `lease_seconds` of the
        database's clock; each with its new token (one more than its last claim's)."""
        return (await self.claim_and_look(worker_id, lease_seconds, limit)).leases

    async def claim_and_look(self, worker_id: str, lease_seconds: float, limit: int) -> Claimed:
        """`claim`, and whether claimable jobs were left (as the claim's snapshot saw them;
        False when it took none)."""
        found = await self._fetch(
            _CLAIM, worker_id, float(lease_seconds), limit, CLAIMABLE_STATUSES
        )
        leases = [Lease(job_id, token) for job_id, token, _ in found]
        return Claimed(leases, bool(found) and found[0]["more"])

    async def renew(self, worker_id: str, job_id: str, token: int, lease_seconds: float) -> bool:
        """Extend the lease to `lease_seconds` from now; False when the worker no longer holds
        `token` (another worker claimed the job after it expired, or it was released): the
        worker must stop the job's processes and append nothing more. A lease past its expiry
        that nobody claimed since is still held, and renewed."""
        return await self._changed(_RENEW, worker_id, job_id, token, float(lease_seconds))

    async def release(self, worker_id: str, job_id: str, token: int) -> bool:
        """Give the job up (it ended, or the worker stops): claimable again at once if the log
        still says Queued or Running. False when the worker no longer held `token`."""
        return await self._changed(_RELEASE, worker_id, job_id, token)

    async def release_all(self, worker_id: str) -> list[str]:
        """Give up every lease `worker_id` holds: a worker starting again under the id of its
        previous life (which is dead) frees its jobs at once rather than at their expiry.
        Returns the jobs released."""
        return [job_id for (job_id,) in await self._fetch(_RELEASE_ALL, worker_id)]

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._db.fetch(sql, *args))
        except DB_ERRORS as e:
            raise store_error(e, "lease query failed") from e

    async def _changed(self, sql: str, *args: object) -> bool:
        return bool(await self._fetch(sql, *args))
