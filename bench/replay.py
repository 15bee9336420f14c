"""Replay throughput: read + decode + fold, against the raw floor and the eventsourcing library.

- one job of JOB_EVENTS events: `EventLog.read` then `fold`;
- a log of LOG_EVENTS events (LOG_JOBS jobs, interleaved as concurrent jobs are): `tail` page
  by page, each event applied to its job's state.

Against raw `sqlite3` fetching the same rows and decoding `ts` and `data` into the same
`Recorded` and event Structs, then the same fold (target: at least 0.7x), and against the
eventsourcing repository rebuilding one aggregate of JOB_EVENTS events (target: at least 5x).
Rebuilding a LOG_EVENTS-event aggregate would take the peer about half a minute a run, so the
log case is compared with the peer's rate on JOB_EVENTS events (a rate per event).

Each run measures ours then raw on the job, and alternates them every CHUNK events on the
log, so both see the same load on this shared machine. The fixture databases are written once
with raw sqlite3, in the store's exact row format, and cached under bench/out/.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from aura.projections.events import DECODER, Recorded
from aura.projections.job import JobState, apply, fold
from aura.store.log import DB_FILE_NAME, PAGE_SIZE, EventLog
from aura.store.schema import MIGRATIONS

from ._common import INSERT, OUT, REPEATS, Row, bulk_load, job_events, report, rows_of, runs, sized

__all__ = ["main"]

JOB_EVENTS = sized(100_000, 1_000)
LOG_EVENTS = sized(1_000_000, 5_000)
LOG_JOBS = sized(2_000, 100)
#: jobs running at once while the log was written: their events interleave
LOG_WAVE = 50
#: events read by ours, then by raw, in turn, in the log case
CHUNK = sized(100_000, 1_000)
#: bump when the fixtures' content changes, so cached ones are rebuilt
FIXTURE_VERSION = 2

BIG_JOB = "job-big"
_SELECT = "SELECT seq, job_id, version, ts, data FROM events"


def _fixtures() -> Path:
    return OUT / f"replay-v{FIXTURE_VERSION}-schema{len(MIGRATIONS)}-{JOB_EVENTS}-{LOG_EVENTS}"


def _build(path: Path, rows: Iterator[Row]) -> None:
    """Write `rows` into a new database at `path` (a folder) as the store would lay them out."""
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with bulk_load(partial) as conn:
        conn.executemany(INSERT, rows)
    partial.rename(path)


def _log_rows() -> Iterator[Row]:
    """LOG_EVENTS rows: waves of LOG_WAVE jobs whose events interleave round-robin."""
    per_job = LOG_EVENTS // LOG_JOBS
    seq = 1
    for wave in range(0, LOG_JOBS, LOG_WAVE):
        jobs = [
            list(rows_of(f"job-{n:05d}", job_events(n, per_job), 0))
            for n in range(wave, wave + LOG_WAVE)
        ]
        for i in range(per_job):
            for job in jobs:
                yield (seq, *job[i][1:])
                seq += 1


def _es_build(path: Path) -> None:
    app = _es_app(path.with_name(path.name + ".partial"))
    job = _EsJob()
    for k in range(JOB_EVENTS - 1):
        job.progress(step="render", pct=k / JOB_EVENTS * 100, eta_seconds=1.0)
    app.save(job)
    (path.with_name(path.name + ".partial") / "id").write_text(str(job.id))
    app.close()
    path.with_name(path.name + ".partial").rename(path)


def ensure_fixtures() -> Path:
    """Build the cached fixtures that are missing; returns their folder."""
    root = _fixtures()
    steps: list[tuple[str, Callable[[Path], None]]] = [
        ("job", lambda p: _build(p, rows_of(BIG_JOB, job_events(0, JOB_EVENTS), 1))),
        ("log", lambda p: _build(p, _log_rows())),
        # Stored topics name the aggregate's module, which depends on how this one was imported.
        (f"eventsourcing-{_EsJob.__module__}", _es_build),
    ]
    for name, build in steps:
        if not (root / name).is_dir():
            started = time.perf_counter()
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(root / f"{name}.partial", ignore_errors=True)
            build(root / name)
            print(f"  built fixture {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return root


# ---- ours -------------------------------------------------------------------------------


async def _ours_job(path: Path) -> tuple[float, float]:
    """(events/s of read + decode + fold, events/s of read + decode alone)."""
    log = await EventLog.open(path, readonly=True)
    try:
        started = time.perf_counter()
        records = await log.read(BIG_JOB)
        decoded = time.perf_counter()
        state = fold(records)
        elapsed = time.perf_counter() - started
    finally:
        await log.close()
    assert state is not None and state.version == JOB_EVENTS, state
    return len(records) / elapsed, len(records) / (decoded - started)


async def _log(path: Path) -> tuple[float, float, float, float]:
    """Ours and raw over the whole log, alternating every CHUNK events.

    Returns (ours, ours read+decode, raw, raw read+decode) in events/s.
    """
    log = await EventLog.open(path, readonly=True)
    conn = _raw_connect(path)
    ours: dict[str, JobState] = {}
    raw: dict[str, JobState] = {}
    times = [0.0, 0.0, 0.0, 0.0]
    last = 0
    try:
        for _ in range(LOG_EVENTS // CHUNK):
            started, reading, seq = time.perf_counter(), 0.0, last
            while seq < last + CHUNK:
                t = time.perf_counter()
                page = await log.tail(seq)
                reading += time.perf_counter() - t
                for rec in page:
                    ours[rec.job_id] = apply(ours.get(rec.job_id), rec)
                seq = page[-1].seq
            times[0] += time.perf_counter() - started
            times[1] += reading

            started, reading = time.perf_counter(), 0.0
            cursor = conn.execute(_SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?", (last, CHUNK))
            while True:
                t = time.perf_counter()
                records = _records(cursor.fetchmany(PAGE_SIZE))
                reading += time.perf_counter() - t
                if not records:
                    break
                for rec in records:
                    raw[rec.job_id] = apply(raw.get(rec.job_id), rec)
            times[2] += time.perf_counter() - started
            times[3] += reading
            last = seq
    finally:
        conn.close()
        await log.close()
    assert last == LOG_EVENTS and ours == raw and len(ours) == LOG_JOBS
    ours_rate, ours_read, raw_rate, raw_read = (LOG_EVENTS / t for t in times)
    return ours_rate, ours_read, raw_rate, raw_read


# ---- raw sqlite3 ------------------------------------------------------------------------


def _raw_connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path / DB_FILE_NAME}?mode=ro", uri=True)


def _records(rows: list[tuple[int, str, int, str, str]]) -> list[Recorded]:
    decode, parse_ts = DECODER.decode, datetime.fromisoformat
    return [
        Recorded(seq, job_id, version, parse_ts(ts), decode(data))
        for seq, job_id, version, ts, data in rows
    ]


def _raw_job(path: Path) -> tuple[float, float]:
    conn = _raw_connect(path)
    try:
        started = time.perf_counter()
        rows = conn.execute(_SELECT + " WHERE job_id = ? ORDER BY version", (BIG_JOB,)).fetchall()
        records = _records(rows)
        decoded = time.perf_counter()
        state = fold(records)
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    assert state is not None and state.version == JOB_EVENTS, state
    return len(records) / elapsed, len(records) / (decoded - started)


# ---- the eventsourcing peer -------------------------------------------------------------


class _EsJob(Aggregate):
    """A job as an eventsourcing aggregate: created, then progress events."""

    def __init__(self) -> None:
        self.step = ""
        self.pct = 0.0
        self.eta_seconds: float | None = None

    @event("Progressed")
    def progress(self, step: str, pct: float, eta_seconds: float | None) -> None:
        self.step = step
        self.pct = pct
        self.eta_seconds = eta_seconds


class _EsJobs(Application[uuid.UUID]):
    pass


def _es_app(path: Path) -> _EsJobs:
    path.mkdir(parents=True, exist_ok=True)
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path / "es.db")}
    return _EsJobs(env=env)


def _peer(path: Path) -> float:
    app = _es_app(path)
    try:
        job_id = uuid.UUID((path / "id").read_text())
        started = time.perf_counter()
        job: _EsJob = app.repository.get(job_id)
        elapsed = time.perf_counter() - started
    finally:
        app.close()
    assert job.version == JOB_EVENTS, job.version
    return JOB_EVENTS / elapsed


def main() -> list[str]:
    root = ensure_fixtures()
    print(
        f"one job of {JOB_EVENTS:,} events; a log of {LOG_EVENTS:,} events in {LOG_JOBS:,} jobs; "
        f"eventsourcing aggregate of {JOB_EVENTS:,} events; {REPEATS} runs, medians"
    )
    figures: dict[str, list[float]] = {}
    for run in range(REPEATS):
        results = {
            "job": (*asyncio.run(_ours_job(root / "job")), *_raw_job(root / "job")),
            "log": asyncio.run(_log(root / "log")),
        }
        for case, (ours, ours_read, raw, raw_read) in results.items():
            figures.setdefault(f"ours {case}", []).append(ours)
            figures.setdefault(f"ours {case} read+decode", []).append(ours_read)
            figures.setdefault(f"raw {case}", []).append(raw)
            figures.setdefault(f"raw {case} read+decode", []).append(raw_read)
        figures.setdefault("eventsourcing", []).append(
            _peer(root / f"eventsourcing-{_EsJob.__module__}")
        )
        print(
            "  run {}: {}".format(
                run + 1, ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in figures.items())
            ),
            flush=True,
        )
    for name, values in figures.items():
        print(f"  {name} {runs(values)}")
    f = figures
    return [
        report("job, read+decode+fold", f["ours job"], f["raw job"], 0.7, "raw sqlite3"),
        report("log, read+decode+fold", f["ours log"], f["raw log"], 0.7, "raw sqlite3"),
        report(
            "job, read+decode (info)",
            f["ours job read+decode"],
            f["raw job read+decode"],
            0.7,
            "raw sqlite3",
        ),
        report(
            "log, read+decode (info)",
            f["ours log read+decode"],
            f["raw log read+decode"],
            0.7,
            "raw sqlite3",
        ),
        report("job vs peer", f["ours job"], f["eventsourcing"], 5, "eventsourcing"),
        report("log vs peer", f["ours log"], f["eventsourcing"], 5, "eventsourcing"),
    ]


if __name__ == "__main__":
    main()
