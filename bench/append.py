"""Append throughput of the event log, against the raw floor and the eventsourcing library.

(a) 50 concurrent appender tasks, each appending one event at a time to a new job, group
    committed; against raw `sqlite3` inserting the same rows with `executemany` in batches of the
    sizes our group commit formed, same PRAGMAs and schema. Target: at least 0.6x.
(b) One appender awaiting each append (one job, version after version); against bare aiosqlite,
    `execute(INSERT)` then `commit()` per event. Target: at least 0.9x.
(c) eventsourcing's SQLite application recorder saving the same events, one per
    `insert_events`, at its default durability (synchronous FULL); our (a) at NORMAL and at FULL
    must each be at least 10x its rate.
(a) on PostgreSQL, in the same run (bench/_append_pg.py): PgEventLog's group commit against raw
    asyncpg, `executemany` of the same rows (the events, the job list's rows and position) in one
    transaction per batch. Target: at least 0.6x. Against the events alone: info. An
    unreachable server is a failed figure of the table.

Each run alternates ours and its baseline CHUNKS times (the baseline writing exactly the rows
ours just wrote), so both see the same load on this shared machine. A no-SQL skeleton (the
futures, wake-ups and flusher task per batch that any asyncio group commit pays) shows the
ceiling this design puts on the ratio of (a).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path

import aiosqlite
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from aura.projections.events import ENCODER, Event, StepProgressed
from aura.store.connections import run_with_connection
from aura.store.errors import StoreError
from aura.store.log import DB_FILE_NAME, Durability, EventLog
from aura.store.schema import migrate

from ._append_pg import PgAppendRun, concurrent_pg
from ._common import (
    INSERT,
    REPEATS,
    STEPS,
    Row,
    fresh_dir,
    job_created,
    median,
    report,
    runs,
    sized,
)
from ._pg import PG_ERRORS, bench_database, server_shown
from ._table import figure

__all__ = ["main"]

#: concurrent appenders in case (a)
APPENDERS = sized(50, 5)
#: rounds of APPENDERS appends per run of case (a)
ROUNDS = sized(200, 10)
#: events per run of case (b)
SINGLE_EVENTS = sized(2_000, 50)
#: saves per run of case (c)
PEER_SAVES = sized(1_000, 20)
#: times a run alternates between ours and its baseline
CHUNKS = sized(10, 2)

_SELECT_ROWS = (
    "SELECT seq, job_id, version, type, step, attempt, ts, data FROM events "
    "WHERE seq > ? ORDER BY seq"
)


class _Written:
    """The rows a run has written since the last call, in the transactions that wrote them."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path / DB_FILE_NAME)
        self._last = 0

    def batches(self) -> list[list[Row]]:
        rows: list[Row] = self._conn.execute(_SELECT_ROWS, (self._last,)).fetchall()
        if rows:
            self._last = rows[-1][0]
        # One group commit stamps all its rows with one `ts`: each run of equal `ts` is a batch.
        return [list(batch) for _, batch in itertools.groupby(rows, key=lambda row: row[6])]

    def close(self) -> None:
        self._conn.close()


def _raw_connect(path: Path, durability: Durability) -> sqlite3.Connection:
    conn = sqlite3.connect(path / DB_FILE_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={durability.value}")
    migrate(conn)
    return conn


async def _timed(work: Awaitable[object]) -> float:
    """Seconds `work` takes (a coroutine or a gather: neither runs before it is awaited)."""
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


# ---- (a) concurrent appenders -----------------------------------------------------------


async def _concurrent(durability: Durability, *, fresh_tasks: bool = False) -> tuple[float, ...]:
    """(ours events/s, raw events/s, median batch size) of one run of case (a).

    With `fresh_tasks`, each round is a `gather` of APPENDERS new tasks instead, so the rate
    also pays for creating and finishing a task per append.
    """
    name = f"append-a-{durability.value.lower()}"
    path, raw_path = fresh_dir(name), fresh_dir(name + "-raw")
    log = await EventLog.open(path, durability=durability)
    raw = _raw_connect(raw_path, durability)
    written = _Written(path)
    ours_s = raw_s = 0.0
    sizes: list[int] = []
    per_chunk = ROUNDS // CHUNKS

    async def appender(appends: list[tuple[str, list[Event]]]) -> None:
        for job_id, events in appends:
            await log.append(job_id, events, 0)

    async def rounds(by_round: list[tuple[tuple[str, list[Event]], ...]]) -> None:
        for appends in by_round:
            await asyncio.gather(*(log.append(job_id, e, 0) for job_id, e in appends))

    try:
        for chunk in range(CHUNKS):
            work: list[list[tuple[str, list[Event]]]] = [
                [
                    (f"job-{chunk}-{r:04d}-{i:02d}", [job_created(r * APPENDERS + i)])
                    for r in range(per_chunk)
                ]
                for i in range(APPENDERS)
            ]
            if fresh_tasks:
                ours_s += await _timed(rounds(list(zip(*work, strict=True))))
            else:
                ours_s += await _timed(asyncio.gather(*(appender(a) for a in work)))
            batches = written.batches()
            sizes.extend(len(batch) for batch in batches)
            started = time.perf_counter()
            for batch in batches:
                raw.execute("BEGIN")
                raw.executemany(INSERT, batch)
                raw.execute("COMMIT")
            raw_s += time.perf_counter() - started
    finally:
        written.close()
        raw.close()
        await log.close()
    count = sum(sizes)
    assert count == ROUNDS // CHUNKS * CHUNKS * APPENDERS
    return count / ours_s, count / raw_s, median([float(s) for s in sizes])


async def _skeleton() -> float:
    """Appends/s of case (a)'s shape with no SQL: futures, wake-ups, a flusher task per batch
    (at NORMAL the group commit runs on the loop's thread, so there is no thread hop)."""
    pending: list[asyncio.Future[None]] = []
    flusher: list[asyncio.Task[None]] = []

    async def flush() -> None:
        batch = pending[:]
        pending.clear()
        for future in batch:
            future.set_result(None)
        flusher.clear()

    async def append() -> None:
        future = asyncio.get_running_loop().create_future()
        pending.append(future)
        if not flusher:
            flusher.append(asyncio.create_task(flush()))
        await future

    async def appender() -> None:
        for _ in range(ROUNDS):
            await append()

    elapsed = await _timed(asyncio.gather(*(appender() for _ in range(APPENDERS))))
    return ROUNDS * APPENDERS / elapsed


# ---- (b) one appender -------------------------------------------------------------------


async def _single() -> tuple[float, float]:
    """(ours events/s, bare aiosqlite events/s) of one run of case (b)."""
    path, bare_path = fresh_dir("append-b"), fresh_dir("append-b-bare")
    log = await EventLog.open(path)
    bare = await aiosqlite.connect(bare_path / DB_FILE_NAME)
    written = _Written(path)
    ours_s = bare_s = 0.0
    per_chunk = SINGLE_EVENTS // CHUNKS
    events = [StepProgressed(step=STEPS[0], pct=k * 100 / SINGLE_EVENTS) for k in range(per_chunk)]

    async def ours(version: int) -> None:
        for event in events:
            version += 1
            await log.append("job-single", [event], version - 1)

    async def baseline(rows: list[Row]) -> None:
        for row in rows:
            await bare.execute(INSERT, row)
            await bare.commit()

    try:
        await bare.execute("PRAGMA journal_mode=WAL")
        await bare.execute(f"PRAGMA synchronous={Durability.NORMAL.value}")
        await run_with_connection(bare, migrate)
        await log.append("job-single", [job_created(0)], 0)
        version = 1
        written.batches()  # skip JobCreated
        for _ in range(CHUNKS):
            ours_s += await _timed(ours(version))
            version += per_chunk
            rows = [row for batch in written.batches() for row in batch]
            bare_s += await _timed(baseline(rows))
    finally:
        written.close()
        await bare.close()
        await log.close()
    count = per_chunk * CHUNKS
    return count / ours_s, count / bare_s


# ---- (c) the eventsourcing peer ---------------------------------------------------------


def _peer() -> tuple[float, int]:
    """eventsourcing's recorder saving PEER_SAVES events, one per save: (events/s, synchronous)."""
    datastore = SQLiteDatastore(str(fresh_dir("append-c") / "eventsourcing.db"))
    try:
        recorder = SQLiteApplicationRecorder(datastore)
        recorder.create_table()
        stored = [
            StoredEvent(
                originator_id=uuid.uuid4(),
                originator_version=1,
                topic="JobCreated",
                state=msg,
            )
            for msg in (ENCODER.encode(job_created(n)) for n in range(PEER_SAVES))
        ]
        started = time.perf_counter()
        for event in stored:
            recorder.insert_events([event])
        elapsed = time.perf_counter() - started
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA synchronous")
            synchronous = int(cursor.fetchone()[0])
    finally:
        datastore.close()
    return len(stored) / elapsed, synchronous


async def _postgres() -> PgAppendRun:
    """Case (a) on PostgreSQL, in a database of its own (created, then dropped)."""
    async with bench_database("aura_bench_append") as url:
        return await concurrent_pg(url, APPENDERS, ROUNDS, CHUNKS)


def main() -> list[str]:
    print(
        f"(a) {APPENDERS} appender tasks x {ROUNDS} appends of one event to a new job; "
        f"(b) {SINGLE_EVENTS} appends of one event to one job; (c) eventsourcing, {PEER_SAVES} "
        f"saves of one event; (a) on PostgreSQL. {REPEATS} runs, each alternating ours and "
        f"baseline {CHUNKS} times"
    )
    figures: dict[str, list[float]] = {}
    synchronous = -1
    pg_failure: str | None = None
    for run in range(REPEATS):
        results = {
            "a NORMAL": asyncio.run(_concurrent(Durability.NORMAL)),
            "a FULL": asyncio.run(_concurrent(Durability.FULL)),
            "a new tasks": asyncio.run(_concurrent(Durability.NORMAL, fresh_tasks=True)),
            "b": asyncio.run(_single()),
        }
        if pg_failure is None:
            try:
                pg = asyncio.run(_postgres())
                results["a PostgreSQL"] = (pg.ours, pg.same_rows, pg.batch)
                results["a PostgreSQL events"] = (pg.ours, pg.events_only)
            except (*PG_ERRORS, StoreError) as e:
                pg_failure = f"{type(e).__name__}: {e}"
        for case, result in results.items():
            figures.setdefault(f"{case} ours", []).append(result[0])
            figures.setdefault(f"{case} base", []).append(result[1])
            if len(result) > 2:
                figures.setdefault(f"{case} batch", []).append(result[2])
        peer, synchronous = _peer()
        figures.setdefault("eventsourcing", []).append(peer)
        figures.setdefault("skeleton", []).append(asyncio.run(_skeleton()))
        print(
            f"  run {run + 1}: "
            + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in figures.items() if "batch" not in k),
            flush=True,
        )
    for name, values in figures.items():
        if "batch" not in name:
            print(f"  {name} {runs(values)}")
    m = {name: median(values) for name, values in figures.items()}
    print(
        f"  group commit batch size (median per run): "
        f"{', '.join(f'{s:.0f}' for s in figures['a NORMAL batch'])} at NORMAL, "
        f"{', '.join(f'{s:.0f}' for s in figures['a FULL batch'])} at FULL"
        + (
            f", {', '.join(f'{s:.0f}' for s in figures['a PostgreSQL batch'])} on PostgreSQL"
            if pg_failure is None
            else ""
        )
    )
    skeleton_us = APPENDERS * 1e6 / m["skeleton"]
    raw_us = APPENDERS * 1e6 / m["a NORMAL base"]
    print(
        f"  a round of {APPENDERS}: raw sqlite3 {raw_us:.0f} us; the no-SQL skeleton "
        f"{skeleton_us:.0f} us, so (a) NORMAL can reach at most "
        f"{raw_us / (raw_us + skeleton_us):.2f}x on this design"
    )
    print(f"  eventsourcing's PRAGMA synchronous = {synchronous} (2 is FULL)")
    f = figures
    lines = [
        report("(a) concurrent, NORMAL", f["a NORMAL ours"], f["a NORMAL base"], 0.6, "raw"),
        report("(a) concurrent, FULL (info)", f["a FULL ours"], f["a FULL base"], 0.6, "raw"),
        report(
            "(a) NORMAL, new task per append (info)",
            f["a new tasks ours"],
            f["a new tasks base"],
            0.6,
            "raw",
        ),
        report("(b) one appender", f["b ours"], f["b base"], 0.9, "bare aiosqlite"),
        report("(c) ours (a) NORMAL", f["a NORMAL ours"], f["eventsourcing"], 10, "eventsourcing"),
        report("(c) ours (a) FULL", f["a FULL ours"], f["eventsourcing"], 10, "eventsourcing"),
    ]
    label = "(a) concurrent, PostgreSQL"
    if pg_failure is None:
        lines.append(
            report(label, f["a PostgreSQL ours"], f["a PostgreSQL base"], 0.6, "raw, same rows")
        )
        lines.append(
            report(
                "(a) PostgreSQL, against the events alone (info)",
                f["a PostgreSQL ours"],
                f["a PostgreSQL events base"],
                0.6,
                "raw, events only",
            )
        )
    else:
        failure = f"FAILED: no PostgreSQL at {server_shown()}: {pg_failure}"
        figure(label, failure[:120], passed=False, target=">= 0.6x")
        print(f"{label}: {failure}", flush=True)
        lines.append(f"{label}: {failure}")
    return lines


if __name__ == "__main__":
    main()
