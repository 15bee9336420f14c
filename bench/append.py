"""Append throughput of the event log, against the raw floor and the eventsourcing library.

(a) 50 concurrent appenders of one event each (each to a new job), round after round, group
    committed; against raw `sqlite3` inserting the same rows with `executemany` in batches of the
    sizes our group commit formed, same PRAGMAs and schema. Target: at least 0.6x.
(b) One appender awaiting each append (one job, version after version); against bare aiosqlite,
    `execute(INSERT)` then `commit()` per event. Target: at least 0.9x.
(c) eventsourcing's SQLite application recorder saving the same events, one per
    `insert_events`, at its default durability (synchronous FULL); our (a) at NORMAL and at FULL
    must each be at least 10x its rate.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from aura.projections.events import Event, StepProgressed
from aura.store.log import DB_FILE_NAME, Durability, EventLog
from aura.store.schema import migrate

from ._common import INSERT, REPEATS, STEPS, Row, fresh_dir, job_created, median, report, runs

__all__ = ["main"]

#: concurrent appenders in case (a)
APPENDERS = 50
#: rounds of APPENDERS appends per run of case (a)
ROUNDS = 200
#: events per run of case (b)
SINGLE_EVENTS = 2_000
#: saves per run of case (c)
PEER_SAVES = 1_000

_SELECT_ROWS = "SELECT seq, job_id, version, type, step, attempt, ts, data FROM events ORDER BY seq"
# Every transaction of one group commit stamps its rows with one `ts`, so the runs of equal
# `ts` are the batches the group commit formed.
_SELECT_BATCHES = "SELECT count(*) FROM events GROUP BY ts ORDER BY min(seq)"


def _stored(path: Path) -> tuple[list[Row], list[int]]:
    """The rows a run wrote and the sizes of the transactions it wrote them in."""
    conn = sqlite3.connect(path / DB_FILE_NAME)
    try:
        rows = conn.execute(_SELECT_ROWS).fetchall()
        batches = [n for (n,) in conn.execute(_SELECT_BATCHES)]
    finally:
        conn.close()
    return rows, batches


# ---- (a) concurrent appenders -----------------------------------------------------------


async def _ours_concurrent(
    path: Path, durability: Durability, rounds: int, *, fresh_tasks: bool = False
) -> float:
    """APPENDERS appender tasks, each appending `rounds` times one event to a new job.

    With `fresh_tasks`, each round is instead a `gather` of APPENDERS new tasks, so the rate
    also pays for creating and finishing a task per append.
    """
    work: list[list[tuple[str, list[Event]]]] = [
        [(f"job-{r:05d}-{i:02d}", [job_created(r * APPENDERS + i)]) for r in range(rounds)]
        for i in range(APPENDERS)
    ]
    log = await EventLog.open(path, durability=durability)

    async def appender(appends: list[tuple[str, list[Event]]]) -> None:
        for job_id, events in appends:
            await log.append(job_id, events, 0)

    try:
        started = time.perf_counter()
        if fresh_tasks:
            for r in range(rounds):
                await asyncio.gather(*(log.append(*work[i][r], 0) for i in range(APPENDERS)))
        else:
            await asyncio.gather(*(appender(appends) for appends in work))
        elapsed = time.perf_counter() - started
    finally:
        await log.close()
    return rounds * APPENDERS / elapsed


def _raw_connect(path: Path, durability: Durability) -> sqlite3.Connection:
    conn = sqlite3.connect(path / DB_FILE_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={durability.value}")
    migrate(conn)
    return conn


def _raw_batches(path: Path, durability: Durability, rows: list[Row], sizes: list[int]) -> float:
    batches, at = [], 0
    for size in sizes:
        batches.append(rows[at : at + size])
        at += size
    conn = _raw_connect(path, durability)
    try:
        started = time.perf_counter()
        for batch in batches:
            conn.execute("BEGIN")
            conn.executemany(INSERT, batch)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return len(rows) / elapsed


def _case_concurrent(
    durability: Durability, *, fresh_tasks: bool = False
) -> tuple[list[float], list[float], list[int]]:
    ours, raw, sizes = [], [], []
    for run in range(REPEATS):
        path = fresh_dir(f"append-a-{durability.value.lower()}")
        ours.append(
            asyncio.run(_ours_concurrent(path, durability, ROUNDS, fresh_tasks=fresh_tasks))
        )
        rows, batch_sizes = _stored(path)
        sizes.extend(batch_sizes)
        raw.append(_raw_batches(fresh_dir("append-a-raw"), durability, rows, batch_sizes))
        print(f"  run {run + 1}: ours {ours[-1]:,.0f}/s raw {raw[-1]:,.0f}/s", flush=True)
    return ours, raw, sizes


# ---- (b) one appender -------------------------------------------------------------------


def _progress(count: int) -> list[Event]:
    return [StepProgressed(step=STEPS[0], pct=k / count * 100) for k in range(count)]


async def _ours_single(path: Path, count: int) -> float:
    events = _progress(count)
    log = await EventLog.open(path)
    try:
        await log.append("job-single", [job_created(0)], 0)
        started = time.perf_counter()
        for version, event in enumerate(events, start=1):
            await log.append("job-single", [event], version)
        elapsed = time.perf_counter() - started
    finally:
        await log.close()
    return count / elapsed


async def _bare_aiosqlite(path: Path, rows: Sequence[Row]) -> float:
    conn = await aiosqlite.connect(path / DB_FILE_NAME)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={Durability.NORMAL.value}")
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn._execute(migrate, conn._conn)  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        for row in rows:
            await conn.execute(INSERT, row)
            await conn.commit()
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return len(rows) / elapsed


def _case_single() -> tuple[list[float], list[float]]:
    ours, bare = [], []
    for run in range(REPEATS):
        path = fresh_dir("append-b")
        ours.append(asyncio.run(_ours_single(path, SINGLE_EVENTS)))
        rows, _ = _stored(path)
        bare.append(asyncio.run(_bare_aiosqlite(fresh_dir("append-b-bare"), rows[1:])))
        print(f"  run {run + 1}: ours {ours[-1]:,.0f}/s bare {bare[-1]:,.0f}/s", flush=True)
    return ours, bare


# ---- (c) the eventsourcing peer ---------------------------------------------------------


def _peer(path: Path, rows: Sequence[Row]) -> tuple[float, int]:
    """eventsourcing's recorder saving `rows`' events one per save; (rate, its synchronous)."""
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(str(path / "eventsourcing.db"))
    try:
        recorder = SQLiteApplicationRecorder(datastore)
        recorder.create_table()
        stored = [
            StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic=t, state=d.encode())
            for (_, _, _, t, _, _, _, d) in rows
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


def _case_peer() -> tuple[list[float], int]:
    path = fresh_dir("append-c-rows")
    asyncio.run(_ours_concurrent(path, Durability.NORMAL, PEER_SAVES // APPENDERS))
    rows, _ = _stored(path)
    rates, synchronous = [], -1
    for run in range(REPEATS):
        rate, synchronous = _peer(fresh_dir("append-c"), rows)
        rates.append(rate)
        print(f"  run {run + 1}: eventsourcing {rate:,.0f}/s", flush=True)
    return rates, synchronous


def main() -> list[str]:
    print(
        f"(a) {APPENDERS} concurrent appender tasks x {ROUNDS} appends of one event to a new job, "
        f"{REPEATS} runs, medians"
    )
    lines = []
    a_ours, a_raw, sizes = _case_concurrent(Durability.NORMAL)
    print(
        f"  group commit batch sizes: median {median([float(s) for s in sizes]):.0f}, "
        f"min {min(sizes)}, max {max(sizes)}, {len(sizes)} transactions"
    )
    print(f"  ours {runs(a_ours)} raw {runs(a_raw)}")
    lines.append(
        report("(a) concurrent, NORMAL", median(a_ours), median(a_raw), 0.6, "raw sqlite3")
    )
    f_ours, f_raw, _ = _case_concurrent(Durability.FULL)
    print(f"  ours {runs(f_ours)} raw {runs(f_raw)}")
    lines.append(
        report("(a) concurrent, FULL (info)", median(f_ours), median(f_raw), 0.6, "raw sqlite3")
    )
    t_ours, t_raw, _ = _case_concurrent(Durability.NORMAL, fresh_tasks=True)
    print(f"  ours {runs(t_ours)} raw {runs(t_raw)}")
    lines.append(
        report(
            "(a) NORMAL, a new task per append (info)",
            median(t_ours),
            median(t_raw),
            0.6,
            "raw sqlite3",
        )
    )

    print(f"(b) one appender, {SINGLE_EVENTS} events to one job, {REPEATS} runs, medians")
    b_ours, b_bare = _case_single()
    print(f"  ours {runs(b_ours)} bare {runs(b_bare)}")
    lines.append(report("(b) one appender", median(b_ours), median(b_bare), 0.9, "bare aiosqlite"))

    print(f"(c) eventsourcing SQLite recorder, {PEER_SAVES} saves of one event, {REPEATS} runs")
    peer, synchronous = _case_peer()
    print(f"  eventsourcing {runs(peer)} (its PRAGMA synchronous = {synchronous}; 2 is FULL)")
    lines.append(report("(c) ours (a) NORMAL", median(a_ours), median(peer), 10, "eventsourcing"))
    lines.append(report("(c) ours (a) FULL", median(f_ours), median(peer), 10, "eventsourcing"))
    return lines


if __name__ == "__main__":
    main()
