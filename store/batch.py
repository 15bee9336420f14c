"""One transaction per batch of queued appends: version checks, inserts, inline projections.

INVARIANTS
- Inline projections are applied in the append's own transaction, wherever it commits (the
  event loop's thread or the writer's, see store/group_commit.py).
- What the writer caches about the log (each job's last version, the last seq) holds while
  `PRAGMA data_version` does: a commit by another connection drops it, with the projections'.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from aura.projections.events import Event, Recorded
from aura.store.errors import ConcurrencyError, CorruptEvent, StoreError, append_failed
from aura.store.rows import INSERT, SELECT, Row, decode_rows_skipping, format_ts

__all__ = [
    "CATCH_UP_PAGE",
    "VERSION_CACHE_JOBS",
    "BatchWriter",
    "InlineProjection",
    "QueuedAppend",
    "Results",
    "catch_up_page",
]

logger = logging.getLogger(__name__)

#: events an inline projection folds per transaction while it catches up
CATCH_UP_PAGE = 10_000
#: jobs whose last version the writer remembers; past it, the oldest are forgotten (a job
#: forgotten is looked up once at its next append), so a long-running log's memory is bounded
VERSION_CACHE_JOBS = 100_000

#: each append's stored events, or its error
Results = list[list[Recorded] | Exception]


class QueuedAppend(msgspec.Struct):
    """An append waiting for its group commit (`EventLog.append_nowait`): `future` settles with
    its records or its error."""

    job_id: str
    expected_version: int
    rows: Sequence[tuple[str, str | None, int, str]]  # type, step, attempt, data
    events: Sequence[Event]
    future: asyncio.Future[list[Recorded]]
    #: an append queued before this one by the same writer: this one commits only if it did
    after: QueuedAppend | None = None
    failed: bool = False


class InlineProjection(Protocol):
    """A read model kept in the append's own transaction, so it never lags the log.

    `apply` runs inside the append's open transaction (see store/group_commit.py for the
    thread), after the batch's rows are inserted; it must only write its own tables. Exactly one
    of `committed` (make the cached state of the last `apply` permanent) or `forget` (drop every
    cache: rolled back, or another connection wrote) follows.
    """

    def position(self, conn: sqlite3.Connection) -> int:
        """The last seq this projection has applied, as saved in its tables."""
        ...

    def apply(self, conn: sqlite3.Connection, records: list[Recorded]) -> None: ...

    def committed(self) -> None: ...

    def forget(self) -> None: ...


def _left_out(error: CorruptEvent, row: Row) -> None:
    """A row the read models leave out: one bad row (or an event type of a newer build) must
    not stop those of every other job."""
    logger.error("%s (job %s); left out of the read models", error, row[1])


def catch_up_page(
    conn: sqlite3.Connection, projection: InlineProjection, after: int, limit: int
) -> int | None:
    """Apply the log's next `limit` events after seq `after` to `projection`, in one
    transaction; the last seq applied, or None when the log has none after `after`."""
    page = conn.execute(SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
    if not page:
        return None
    records = decode_rows_skipping(page, _left_out)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if records:  # every row of the page may be one the read models leave out
            projection.apply(conn, records)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        projection.forget()
        raise
    projection.committed()
    last: int = page[-1][0]
    return last


class BatchWriter:
    """Writes batches of queued appends on the writer connection, with what it caches about
    the log between them. Called on whichever thread the group commit runs on, one batch at a
    time; `attach` and `detach` run between two batches."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._versions: dict[str, int] = {}  # job -> last version, valid while data_version holds
        self._data_version: int | None = None
        self._max_seq: int | None = None  # the log's last seq, valid while data_version holds
        self._projections: list[InlineProjection] = []
        self.last_seq = 0  # the last seq written through this writer (or found at open)

    def write(self, batch: list[QueuedAppend]) -> Results:
        """One transaction, one commit for the whole batch."""
        conn = self._conn
        try:
            return self._attempt(conn, batch, exact=False)
        except sqlite3.IntegrityError:
            # A job created before (by us or another process) or a stale cached version: forget
            # cached versions and retry once, looking every job's version up.
            self._forget()
            return self._attempt(conn, batch, exact=True)

    def _attempt(
        self, conn: sqlite3.Connection, batch: list[QueuedAppend], *, exact: bool
    ) -> Results:
        """One transaction for the batch; whatever fails, it is rolled back (never left open).
        An IntegrityError stays itself (the caller may retry); other errors are StoreErrors."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            return self._insert_batch(conn, batch, exact=exact)
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.IntegrityError) and not exact:
                raise
            raise append_failed(e) from e

    def _insert_batch(
        self, conn: sqlite3.Connection, batch: list[QueuedAppend], *, exact: bool
    ) -> Results:
        """Insert the batch's rows in the open transaction and commit.

        Unless `exact`, a job missing from the version cache that the append expects to be new
        (expected_version 0) is not looked up: its row at version 1 can only be inserted if the
        job has no events, so UNIQUE(job_id, version) checks it, and an IntegrityError makes
        `write` retry the batch with `exact`.
        """
        data_version = self._validate_caches(conn)
        seq = self._max_seq
        if seq is None:
            seq = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        now = datetime.now(UTC)
        ts = format_ts(now)
        results: Results = []
        rows: list[tuple[Any, ...]] = []
        appended: list[Recorded] = []
        tentative: dict[str, int] = {}
        versions = self._versions
        failed: set[int] = set()  # ids of this batch's appends that fail
        add_row, record = rows.append, Recorded
        for item in batch:
            job_id = item.job_id
            after = item.after
            if after is not None and (after.failed or id(after) in failed):
                results.append(StoreError(f"job {job_id}: an append queued before this one failed"))
                failed.add(id(item))
                continue
            # The job's version: as this batch left it, else cached, else new (see above) or
            # looked up.
            current = tentative.get(job_id)
            if current is None:
                current = versions.get(job_id)
            if current is None:
                new_job = item.expected_version == 0 and not exact
                current = 0 if new_job else self._stored_version(conn, job_id)
            if current != item.expected_version:
                results.append(ConcurrencyError(job_id, item.expected_version, current))
                failed.add(id(item))
                tentative[job_id] = current
                continue
            recorded = []
            # rows and events have one entry per event by construction (append_nowait)
            for event, (type_name, step, attempt, data) in zip(item.events, item.rows):  # noqa: B905
                seq += 1
                current += 1
                add_row((seq, job_id, current, type_name, step, attempt, ts, data))
                recorded.append(record(seq, job_id, current, now, event))  # type: ignore[arg-type]
            tentative[job_id] = current
            results.append(recorded)
            appended += recorded
        self._commit(conn, rows, appended)
        self._remember_versions(tentative)
        self._max_seq = seq
        # Our own commit leaves data_version unchanged; reading it again here could absorb
        # another connection's commit made since, without dropping the cache.
        self._data_version = data_version
        if rows:
            self.last_seq = seq
        return results

    def _remember_versions(self, versions: dict[str, int]) -> None:
        cache = self._versions
        cache.update(versions)
        excess = len(cache) - VERSION_CACHE_JOBS
        if excess > 0:  # the oldest remembered first: dicts keep insertion order
            for job_id in list(itertools.islice(cache, excess)):
                del cache[job_id]

    def _validate_caches(self, conn: sqlite3.Connection) -> int:
        """Drop what is cached about the log if another connection committed since our last."""
        data_version: int = conn.execute("PRAGMA data_version").fetchone()[0]
        if data_version != self._data_version:
            self._forget()
            self._data_version = data_version
        return data_version

    def _forget(self) -> None:
        self._versions.clear()
        self._max_seq = None
        for projection in self._projections:
            projection.forget()

    def _stored_version(self, conn: sqlite3.Connection, job_id: str) -> int:
        sql = "SELECT coalesce(max(version), 0) FROM events WHERE job_id = ?"
        version: int = conn.execute(sql, (job_id,)).fetchone()[0]
        return version

    def _commit(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], appended: list[Recorded]
    ) -> None:
        """Insert the rows, let the inline projections apply them, commit."""
        try:
            conn.executemany(INSERT, rows)
            if appended:
                for projection in self._projections:
                    projection.apply(conn, appended)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._forget()
            raise
        for projection in self._projections:
            projection.committed()

    # ---- inline projections -------------------------------------------------------------

    def attach(self, projection: InlineProjection) -> None:
        """Bring `projection` up to date with the log, then apply it in every batch (run on the
        writer's thread, between two batches)."""
        conn = self._conn
        position: int | None = projection.position(conn)
        while position is not None:
            position = catch_up_page(conn, projection, position, CATCH_UP_PAGE)
        self._projections.append(projection)

    def detach(self, projection: InlineProjection) -> None:
        """Stop applying `projection` (between two batches)."""
        self._projections.remove(projection)
