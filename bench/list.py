"""The job list at JOBS jobs: its pages, and a server's start-up when the list must be rebuilt.

Pages: the first page against a page deep in the list, by offset and by cursor (a position:
`GET /api/jobs?cursor=`), as `JobsTable.page` reads them for the handler.

An offset walks the index up to the page, so its cost grows with the depth; a position is a seek
in the same index, so a deep page costs what the first one does. Unfiltered, and filtered by
status (a third of the rows). Not a pass/fail test: the figures are printed, each the median of
REPEATS runs of the median of CALLS calls, the cases interleaved within each run.

The table is written directly with sqlite3, as the projector lays out its rows (one row per job,
each TIE jobs sharing a created time as jobs created in one group commit do), in a fresh
database under bench/out/.

Start-up with a stale list (bench/_list_startup.py): a log of JOBS complete jobs whose list has
no rows and no position (as a migration that drops it leaves it); `aura serve` is started and
timed to its first answer of GET /api/health, to the end of the rebuild, and the same again
with the list up to date (the floor).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aura.projections.job import JobStatus
from aura.store.jobs_table import JobPage, JobsTable, ListPosition
from aura.store.log import DB_FILE_NAME, EventLog
from aura.store.rows import format_ts

from ._common import REPEATS, bulk_load, fresh_dir, median, sized
from ._list_startup import startup_lines
from ._table import figure

__all__ = ["main"]

JOBS = sized(100_000, 2_000)
#: jobs sharing one created time
TIE = 4
LIMIT = 50
#: calls of each case per run
CALLS = sized(40, 3)
_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)
_ORDER = "ORDER BY created_utc DESC, rowid DESC"


def _build(folder: Path) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = (
        (
            f"{i:032x}",
            "default",
            _STATUSES[i % len(_STATUSES)].value,
            1,
            format_ts(start + timedelta(seconds=i // TIE)),
            None,
            None,
        )
        for i in range(JOBS)
    )
    with bulk_load(folder) as conn:
        conn.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("ANALYZE")


def _positions(folder: Path, status: JobStatus | None) -> tuple[int, ListPosition, ListPosition]:
    """The offset of the last page, and the positions the second and the last page start
    after."""
    conn = sqlite3.connect(folder / DB_FILE_NAME)
    try:
        where, params = ("WHERE status = ?", (status.value,)) if status else ("", ())
        total = conn.execute(f"SELECT count(*) FROM jobs {where}", params).fetchone()[0]
        sql = f"SELECT created_utc, job_id FROM jobs {where} {_ORDER} LIMIT 1 OFFSET ?"
        second = ListPosition(*conn.execute(sql, (*params, LIMIT - 1)).fetchone())
        last = ListPosition(*conn.execute(sql, (*params, total - LIMIT - 1)).fetchone())
    finally:
        conn.close()
    return total - LIMIT, second, last


async def _time(call: Callable[[], Awaitable[JobPage]]) -> float:
    """Seconds a call takes: the median of CALLS calls."""
    took = []
    for _ in range(CALLS):
        started = time.perf_counter()
        page = await call()
        took.append(time.perf_counter() - started)
        assert len(page.rows) == LIMIT
    return median(took)


async def _measure(folder: Path, status: JobStatus | None) -> dict[str, list[float]]:
    deep_offset, second, deep_position = _positions(folder, status)
    async with await EventLog.open(folder) as log:
        table = JobsTable(log)
        assert (await table.page(status, LIMIT, deep_offset)).rows == (
            await table.page(status, LIMIT, after=deep_position)
        ).rows  # the same page, both ways
        cases: dict[str, Callable[[], Awaitable[JobPage]]] = {
            "offset first": lambda: table.page(status, LIMIT, 0),
            f"offset {deep_offset:,}": lambda: table.page(status, LIMIT, deep_offset),
            "cursor first": lambda: table.page(status, LIMIT),
            "cursor second": lambda: table.page(status, LIMIT, after=second),
            "cursor deep": lambda: table.page(status, LIMIT, after=deep_position),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(REPEATS):
            for name, call in cases.items():
                times[name].append(await _time(call))
    return times


def _report(label: str, times: dict[str, list[float]]) -> list[str]:
    offset_first, offset_deep, first, second, deep = (median(t) for t in times.values())
    at = list(times)[1]
    lines = [
        f"{label}, by offset: first page {offset_first * 1e3:.2f} ms, {at} (the last page) "
        f"{offset_deep * 1e3:.2f} ms: last/first {offset_deep / offset_first:.1f}x",
        f"{label}, by cursor: first page {first * 1e3:.2f} ms, second {second * 1e3:.2f} ms, "
        f"the last page {deep * 1e3:.2f} ms: last/first {deep / first:.1f}x, "
        f"last/second {deep / second:.2f}x",
    ]
    for line in lines:
        print(line, flush=True)
    figure(
        f"{label}: last page by cursor",
        f"{deep * 1e3:.2f} ms",
        f"first page {first * 1e3:.2f} ms",
        deep / first,
        at_most=1.5,  # flat at any depth
    )
    figure(
        f"{label}: last page by offset (info)",
        f"{offset_deep * 1e3:.2f} ms",
        f"first page {offset_first * 1e3:.2f} ms",
        offset_deep / offset_first,
    )
    return lines


def main() -> list[str]:
    print(
        f"job list: {JOBS:,} jobs, pages of {LIMIT}, median of {REPEATS} runs of the median "
        f"of {CALLS} calls",
        flush=True,
    )
    folder = fresh_dir("list")
    started = time.perf_counter()
    _build(folder)
    print(f"  built the table in {time.perf_counter() - started:.1f} s", flush=True)
    lines: list[str] = []
    for label, status in (("all jobs", None), ("status=Failed", JobStatus.FAILED)):
        lines += _report(label, asyncio.run(_measure(folder, status)))
    return lines + startup_lines(JOBS)


if __name__ == "__main__":
    main()
