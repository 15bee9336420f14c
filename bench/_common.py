"""What the benchmarks share: valid event sequences, rows as the store writes them, reporting.

Only ratios measured in the same run mean anything on a shared machine, so every case runs
REPEATS times, interleaved with its baseline, and is reported as the median.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aura.projections.events import (
    ENCODER,
    Event,
    JobCreated,
    JobStarted,
    JobSucceeded,
    Output,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from aura.store.log import DB_FILE_NAME
from aura.store.rows import format_ts
from aura.store.schema import migrate

from ._table import QUICK, figure

__all__ = [
    "INSERT",
    "OUT",
    "REPEATS",
    "STEPS",
    "Row",
    "bulk_load",
    "fresh_dir",
    "job_created",
    "job_events",
    "median",
    "report",
    "rows_of",
    "runs",
    "sized",
]

#: runs of each case; the median is reported
REPEATS = 1 if QUICK else 5
#: cached fixtures and scratch databases (gitignored); quick runs apart, so that `make test`
#: beside a full `make bench` clears none of its folders
OUT = Path(__file__).parent / "out" / ("quick" if QUICK else "")
STEPS = ("script", "voice", "images", "render", "mux")
#: the store's insert, column for column (store/rows.py `INSERT`)
INSERT = (
    "INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[int, str, int, str, str | None, int, str, str]


def fresh_dir(name: str) -> Path:
    """An empty scratch folder under bench/out/."""
    path = OUT / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@contextmanager
def bulk_load(folder: Path) -> Iterator[sqlite3.Connection]:
    """A new log in `folder`, laid out as the store makes it, to fill in one transaction with no
    fsync; committed, checkpointed and closed after."""
    conn = sqlite3.connect(folder / DB_FILE_NAME, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        migrate(conn)
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def job_created(n: int) -> JobCreated:
    return JobCreated(
        preset="default",
        brief={"title": f"Video {n}", "language": "en", "voice": "en-us"},
        steps=STEPS,
        correlation_id=f"corr-{n:08d}",
    )


def job_events(n: int, count: int) -> list[Event]:
    """A valid sequence of `count` events for job number `n`, mostly StepProgressed.

    JobCreated, JobStarted, then each step's StepStarted, its share of progress and
    StepSucceeded, and JobSucceeded last.
    """
    fixed = 3 + 2 * len(STEPS)
    if count < fixed:
        raise ValueError(f"a complete job has at least {fixed} events")
    progress = count - fixed
    events: list[Event] = [job_created(n), JobStarted()]
    for i, step in enumerate(STEPS):
        share = progress // len(STEPS) + (1 if i < progress % len(STEPS) else 0)
        events.append(StepStarted(step=step))
        events.extend(
            StepProgressed(step=step, pct=round(100 * k / share, 2), eta_seconds=float(share - k))
            for k in range(share)
        )
        events.append(StepSucceeded(step=step, duration_seconds=1.5))
    output = Output(
        video_path=f"/data/{n}.mp4", size_bytes=1 << 20, duration_seconds=60.0, sha256="0" * 64
    )
    events.append(JobSucceeded(output=output))
    return events


def rows_of(
    job_id: str, events: list[Event], first_seq: int, start: datetime | None = None
) -> Iterator[Row]:
    """The rows the store writes for `events` (store/group_commit.py `append_nowait`, then
    store/batch.py `_insert_batch`)."""
    ts = start or datetime(2025, 1, 1, tzinfo=UTC)
    for i, e in enumerate(events):
        yield (
            first_seq + i,
            job_id,
            i + 1,
            type(e).__name__,
            e.step_name,
            e.attempt,
            format_ts(ts + timedelta(milliseconds=i)),
            ENCODER.encode(e).decode(),
        )


def sized(full: int, quick: int) -> int:
    """A case's size: `full`, or `quick` in quick mode."""
    return quick if QUICK else full


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(label: str, ours: list[float], base: list[float], target: float, base_label: str) -> str:
    """One result line: median rates, the median of the per-run ratios, PASS/BELOW the target.

    `ours[i]` and `base[i]` come from the same run, so their ratio is what holds on a shared
    machine; the ratio of the two medians is printed beside it.
    """
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    ratio = median(ratios)
    info = "(info)" in label
    verdict = "-" if QUICK else "info" if info else "PASS" if ratio >= target else "BELOW"
    figure(
        label,
        f"{median(ours):,.0f} ev/s",
        f"{base_label} {median(base):,.0f} ev/s",
        ratio,
        at_least=None if info else target,
    )
    line = (
        f"{label}: {median(ours):,.0f} ev/s vs {base_label} {median(base):,.0f} ev/s: "
        f"{ratio:.2f}x (runs {' '.join(f'{r:.2f}' for r in ratios)}; ratio of medians "
        f"{median(ours) / median(base):.2f}x), target >= {target}x: {verdict}"
    )
    print(line, flush=True)
    return line


def runs(values: list[float]) -> str:
    """The individual runs, for the log: `[1.2k 1.3k ...]`."""
    return "[" + " ".join(f"{v / 1000:.1f}k" for v in values) + "]"
