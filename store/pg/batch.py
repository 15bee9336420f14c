"""Writing a batch of queued appends to PostgreSQL: seqs, version checks, the events, the job
list's rows and the notification, in one transaction.

INVARIANTS
- Global order: every write takes the transaction-level advisory lock APPEND_LOCK, then checks
  that the log's last seq is the one its rows were numbered after (`aura_append`,
  store/pg/schema.py), and holds the lock until its commit is visible (PostgreSQL releases it
  after the commit). So seqs are gapless and become visible in order: whoever has seen seq N
  has been able to see every seq below it, and a reader tailing by seq never skips one.
- What the writer remembers (the last seq it wrote, each job's version, the job-list rows) is
  used only while the log's last seq is still the one it wrote: `aura_append` refuses otherwise
  (another process appended), and the batch is numbered again from what the log holds.
  UNIQUE (job_id, version) refuses a job it took for new that another process created.
- The NOTIFY is sent in the same transaction: PostgreSQL delivers it only once it commits.
- Fencing: a batch holding an append fenced by a lease (store/pg/leases.py), or taking a new
  job's first lease, is written by `aura_append_leased` (store/pg/schema.py), which takes those
  leases, checks every fence in the batch's transaction and rolls it all back when one is
  stale; group commit then writes each append alone, so only that one fails, with LeaseLost.
  A batch without a lease never reads or writes one.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg

from aura.projections.events import JobCreated, Recorded
from aura.projections.job_list import ROW_EVENTS, JobRow
from aura.projections.status import JobStatus, job_status_after
from aura.store.batch import VERSION_CACHE_JOBS, QueuedAppend, Results
from aura.store.errors import ConcurrencyError, LeaseLost, StoreError
from aura.store.jobs_table import JOB_LIST
from aura.store.pg.jobs_table import changed_rows, row_columns, to_row
from aura.store.pg.leases import Lease

__all__ = [
    "APPEND_LOCK",
    "CHANNEL",
    "LEASE_LOST",
    "NEWS",
    "OPTIMISTIC_TRIES",
    "BatchWriter",
    "LeaseTake",
    "LeasedAppend",
]

#: the transaction-level advisory lock every append transaction holds (see INVARIANTS)
APPEND_LOCK = 0x41555241_0002
#: the LISTEN/NOTIFY channel; the payload is "<origin> <the commit's last seq>", the origin
#: naming the log (one per process) that committed, then " news" when the commit queued a job
#: (created or retried it) that no worker took in it: claimable, so that workers wake on news
#: without reading the log
CHANNEL = "aura_events"
#: the payload's mark of a commit that queued a job
NEWS = " news"
#: the SQLSTATE `aura_append_leased` raises for a stale fence (a class of our own: "AU")
LEASE_LOST = "AUR01"
#: writes numbered from a fresh read that another process's commit may still overtake; past
#: them, the read and the write share one transaction holding the lock
OPTIMISTIC_TRIES = 2

_STATE = "SELECT * FROM aura_begin_append($1::text[], $2::text[])"
_SENT_TS = "SELECT ts FROM events WHERE seq = $1 AND job_id = $2 AND version = $3"
_APPEND = (
    "SELECT aura_append($1, $2, $3, $4, $5, $6, $7, $8, $9, "
    "$10, $11, $12, $13, $14, $15, $16, $17, $18)"
)
_APPEND_LEASED = (
    "SELECT aura_append_leased($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
    "$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
)

#: the log as a write starts from: its last seq, versions and rows of the batch's jobs
_Known = tuple[int, dict[str, int], dict[str, JobRow]]


class LeaseTake(NamedTuple):
    """A new job's first lease, taken by the worker that creates it in the creation's commit:
    `Lease(job_id, 1)` for `lease_seconds` of the database's clock."""

    worker_id: str
    lease_seconds: float


class LeasedAppend(QueuedAppend):
    """An append that commits only while `fence` is its job's current lease, or that takes
    its new job's first lease (`take`)."""

    fence: Lease | None = None
    take: LeaseTake | None = None


class BatchWriter:
    """Writes batches on the writer's connection, one at a time, with what it remembers of the
    log between them (see INVARIANTS).

    A batch costs one round trip while this process is the only one appending (nothing to read:
    `aura_append` checks the last seq); two (a read, then the write) after another process
    appended; four under contention (BEGIN, the read under the lock, the write, COMMIT).
    """

    def __init__(self) -> None:
        self._last_seq: int | None = None  # the last seq this writer wrote (None: unknown)
        self._versions: dict[str, int] = {}
        self._rows: dict[str, JobRow] = {}
        #: the write last sent: its first record and its results (see `committed_anyway`)
        self._sent: tuple[Recorded, Results] | None = None

    async def write(
        self, conn: asyncpg.Connection, batch: list[QueuedAppend], origin: str
    ) -> Results:
        """Commit the batch in one transaction; raises what the database raised."""
        self._sent = None
        if self._last_seq is not None and self._covers(batch):
            known = (self._last_seq, *self._known_of(batch))
            try:
                results = await self._append(conn, batch, origin, known, trusted=False)
            except asyncpg.UniqueViolationError:  # a job another process created
                results = None
            if results is not None:
                return results
        self._forget()
        for _ in range(OPTIMISTIC_TRIES):
            known = await self._read(conn, batch)
            results = await self._append(conn, batch, origin, known, trusted=True)
            if results is not None:
                return results
        async with conn.transaction():  # appends keep overtaking: read under the lock
            known = await self._read(conn, batch)
            results = await self._append(conn, batch, origin, known, trusted=True)
        assert results is not None  # the lock held since the read: the last seq is as read
        return results

    async def committed_anyway(self, conn: asyncpg.Connection) -> Results | None:
        """After the writer's connection broke in `write`: the results of the write it sent
        last if that committed all the same (the reply was lost, not the commit): its first row
        is in the log with its seq, job, version and the batch's `ts`, which no other write
        stamps. None when it did not commit, or no write was sent. `conn`: another connection."""
        sent, self._sent = self._sent, None
        self._forget()
        if sent is None:
            return None
        first, results = sent
        ts = await conn.fetchval(_SENT_TS, first.seq, first.job_id, first.version)
        return results if ts == first.ts else None

    def _known_of(self, batch: list[QueuedAppend]) -> tuple[dict[str, int], dict[str, JobRow]]:
        """The remembered versions and rows of the batch's jobs only: copying or merging the
        whole cache (up to VERSION_CACHE_JOBS jobs) would cost every batch as much again."""
        remembered = self._versions
        versions = {i.job_id: remembered[i.job_id] for i in batch if i.job_id in remembered}
        return versions, {job_id: self._rows[job_id] for job_id in _row_jobs(batch)}

    def _covers(self, batch: list[QueuedAppend]) -> bool:
        """What is remembered is enough to write the batch without reading: each job's version
        (or a new job), and the row of each job whose row the batch changes."""
        versions, rows = self._versions, self._rows
        for item in batch:
            if item.job_id not in versions:
                first = item.events[0] if item.events else None
                if item.expected_version != 0 or not isinstance(first, JobCreated):
                    return False
        return all(job_id in rows for job_id in _row_jobs(batch))

    async def _read(self, conn: asyncpg.Connection, batch: list[QueuedAppend]) -> _Known:
        batch_jobs = list({item.job_id for item in batch})
        state = await conn.fetchrow(_STATE, batch_jobs, list(_row_jobs(batch)))
        versions = dict(zip(state["job_ids"] or (), state["versions"] or (), strict=True))
        rows = {r[0]: to_row(r) for r in state["job_rows"] or ()}
        return int(state["last_seq"]), versions, rows

    async def _append(
        self,
        conn: asyncpg.Connection,
        batch: list[QueuedAppend],
        origin: str,
        known: _Known,
        *,
        trusted: bool,
    ) -> Results | None:
        """Write the batch numbered after `known`; None if the log moved on meanwhile.
        Unless `trusted` (read from the log just now), a version check that fails is not
        believed: the batch is numbered again from the log."""
        last_seq, versions, rows = known
        results, columns, appended = _number(batch, last_seq, versions)
        if not trusted and any(isinstance(r, ConcurrencyError) for r in results):
            return None
        if not appended:
            return results
        changed = changed_rows(rows, appended)
        last = appended[-1].seq
        payload = f"{origin} {last}" + (NEWS if _queues_a_job(batch, results) else "")
        args = (*columns, *row_columns(changed.values()), JOB_LIST, payload)
        self._sent = (appended[0], results)
        leased = [
            item
            for item, result in zip(batch, results, strict=True)
            if isinstance(item, LeasedAppend) and not isinstance(result, Exception)
        ]
        if not leased:
            written = await conn.fetchval(_APPEND, last_seq, *args)
        else:
            written = await _append_leased(conn, leased, last_seq, args)
        if not written:
            self._sent = None
            return None
        self._remember(last, versions, rows | changed)
        return results

    def _remember(self, last_seq: int, versions: dict[str, int], rows: dict[str, JobRow]) -> None:
        self._last_seq = last_seq
        self._versions.update(versions)
        self._rows.update(rows)
        for cache in (self._versions, self._rows):
            excess = len(cache) - VERSION_CACHE_JOBS
            if excess > 0:  # the oldest first: dicts keep insertion order
                for job_id in list(itertools.islice(cache, excess)):
                    del cache[job_id]

    def _forget(self) -> None:
        self._last_seq = None
        self._versions.clear()
        self._rows.clear()


async def _append_leased(
    conn: asyncpg.Connection, leased: list[LeasedAppend], last_seq: int, args: tuple[Any, ...]
) -> bool:
    """`aura_append_leased` for the batch's appends that passed their version check, holding
    or taking leases; LeaseLost when a fence is stale (nothing written)."""
    fences = [item.fence for item in leased if item.fence is not None]
    takes = [(item.job_id, item.take) for item in leased if item.take is not None]
    jobs, tokens = [f.job_id for f in fences], [f.token for f in fences]
    taken = [job_id for job_id, _ in takes]
    workers = [take.worker_id for _, take in takes]
    seconds = [float(take.lease_seconds) for _, take in takes]
    try:
        leases = (jobs, tokens, taken, workers, seconds)
        return bool(await conn.fetchval(_APPEND_LEASED, *leases, last_seq, *args))
    except asyncpg.PostgresError as e:
        if e.sqlstate != LEASE_LOST:
            raise
        job_id = getattr(e, "detail", None) or ""
        token = next((f.token for f in fences if f.job_id == job_id), 0)
        raise LeaseLost(job_id, token) from e


def _queues_a_job(batch: list[QueuedAppend], results: Results) -> bool:
    """The batch creates or retries a job that no worker took in it: news for the workers."""
    for item, result in zip(batch, results, strict=True):
        if isinstance(result, Exception) or (isinstance(item, LeasedAppend) and item.take):
            continue
        if any(job_status_after(r.event) is JobStatus.QUEUED for r in result):
            return True
    return False


def _row_jobs(batch: list[QueuedAppend]) -> set[str]:
    """The jobs whose row the batch may change, created before it (their row is read)."""
    jobs: set[str] = set()
    for item in batch:
        for event in item.events:
            if isinstance(event, JobCreated):
                break
            if type(event) in ROW_EVENTS:
                jobs.add(item.job_id)
                break
    return jobs


def _number(
    batch: list[QueuedAppend], seq: int, versions: dict[str, int]
) -> tuple[Results, tuple[Any, ...], list[Recorded]]:
    """Check each append's version and number its rows: the results, the columns of the rows
    to insert (seqs, jobs, versions, types, steps, attempts, ts, data) and the records."""
    now = datetime.now(UTC)
    seqs: list[int] = []
    jobs: list[str] = []
    vers: list[int] = []
    types: list[str] = []
    steps: list[str | None] = []
    attempts: list[int] = []
    datas: list[str] = []
    results: Results = []
    appended: list[Recorded] = []
    failed: set[int] = set()
    for item in batch:
        job_id = item.job_id
        after = item.after
        if after is not None and (after.failed or id(after) in failed):
            results.append(StoreError(f"job {job_id}: an append queued before this one failed"))
            failed.add(id(item))
            continue
        current = versions.get(job_id, 0)
        if current != item.expected_version:
            results.append(ConcurrencyError(job_id, item.expected_version, current))
            failed.add(id(item))
            continue
        recorded = []
        for event, (type_name, step, attempt, data) in zip(item.events, item.rows, strict=True):
            seq += 1
            current += 1
            seqs.append(seq)
            jobs.append(job_id)
            vers.append(current)
            types.append(type_name)
            steps.append(step)
            attempts.append(attempt)
            datas.append(data)
            recorded.append(Recorded(seq, job_id, current, now, event))  # type: ignore[arg-type]
        versions[job_id] = current
        results.append(recorded)
        appended += recorded
    return results, (seqs, jobs, vers, types, steps, attempts, now, datas), appended
