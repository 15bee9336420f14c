"""`aura serve`'s start-up when its job list must be rebuilt from the log (run by bench/list.py).

The log holds `jobs` complete jobs of JOB_EVENTS events each, written with raw sqlite3 in the
store's row format; the list has no rows and no position, as a migration that drops the table
leaves it. Each run starts `aura serve` on that log and polls GET /api/health every POLL seconds
from the moment the process starts: the time to the first answer, to the answer that says the
rebuild is done, and each answer's latency meanwhile. Then the same with the list up to date (the
floor: the process's own start). Not a pass/fail test: the medians of RUNS runs are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from aura.store.log import DB_FILE_NAME

from ._common import INSERT, bulk_load, fresh_dir, job_events, median, rows_of
from ._table import QUICK, figure

__all__ = ["startup_lines"]

#: a complete job with no progress ticks (the fewest `job_events` makes)
JOB_EVENTS = 13
RUNS = 1 if QUICK else 3
#: the first answer with a list to rebuild, against the first with the list up to date
TARGET = 1.5
#: seconds between two health requests
POLL = 0.005


class Start(NamedTuple):
    #: seconds from the process's start to its first health answer
    first_answer: float
    #: seconds from the process's start to the answer that says the list is rebuilt
    rebuilt: float
    #: each health answer's latency, seconds
    latencies: list[float]


def _build(folder: Path, jobs: int) -> int:
    """The log of `jobs` jobs, with an empty list; its events."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with bulk_load(folder) as conn:
        for n in range(jobs):
            first_seq = 1 + n * JOB_EVENTS
            created = start + timedelta(milliseconds=n)
            conn.executemany(
                INSERT, rows_of(f"{n:032x}", job_events(n, JOB_EVENTS), first_seq, created)
            )
    return jobs * JOB_EVENTS


def _make_stale(folder: Path) -> None:
    """No rows and no position: the next start rebuilds the list from the whole log."""
    with contextlib.closing(sqlite3.connect(folder / DB_FILE_NAME, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM jobs")
        conn.execute("DELETE FROM projector_positions")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _health(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=120) as resp:
        body: dict[str, object] = json.loads(resp.read())
        return body


def _start(folder: Path, pythonpath: str | None) -> Start:
    """One start of `aura serve` on `folder`, polled until its list is rebuilt, then stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    if pythonpath is not None:  # another build of aura, to compare with
        env["PYTHONPATH"] = pythonpath
    argv = [sys.executable, "-m", "aura.cli.main", "serve", "--data-dir", str(folder)]
    started = time.perf_counter()
    out, err = subprocess.PIPE, subprocess.DEVNULL
    proc = subprocess.Popen([*argv, "--port", "0"], stdout=out, stderr=err, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it listens
        port = int(line.split("127.0.0.1:", 1)[1].split()[0])
        latencies: list[float] = []
        answers: list[float] = []
        while True:
            asked = time.perf_counter()
            body = _health(port)
            answers.append(time.perf_counter() - started)
            latencies.append(answers[-1] - (asked - started))
            job_list = body.get("jobList")
            if not isinstance(job_list, dict) or not job_list["rebuilding"]:
                break  # a build with no jobList part rebuilds before it answers
            time.sleep(POLL)
        return Start(answers[0], answers[-1], latencies)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def _first_answer(starts: list[Start]) -> list[float]:
    return [s.first_answer for s in starts]


def startup_lines(jobs: int, pythonpath: str | None = None) -> list[str]:
    """Build the log, time RUNS starts with a stale list and RUNS with an up-to-date one."""
    folder = fresh_dir("list-startup")
    began = time.perf_counter()
    events = _build(folder, jobs)
    print(f"  built a log of {events:,} events in {time.perf_counter() - began:.1f} s", flush=True)
    stale: list[Start] = []
    fresh: list[Start] = []
    for _ in range(RUNS):  # alternated, so both see the same load
        _make_stale(folder)
        stale.append(_start(folder, pythonpath))
        fresh.append(_start(folder, pythonpath))
    during = [lat for s in stale for lat in s.latencies[:-1]]  # the last said: rebuilt
    rebuilt = median([s.rebuilt for s in stale])
    lines = [
        f"start-up, {jobs:,} jobs ({events:,} events), list to rebuild: first health answer "
        f"{median(_first_answer(stale)):.2f} s, list rebuilt {rebuilt:.2f} s; list up to date "
        f"(the floor): first answer {median(_first_answer(fresh)):.2f} s (from the process's "
        f"start, median of {RUNS} runs)",
        f"health while rebuilding: {len(during)} answers, latency median "
        f"{median(during or [0.0]) * 1e3:.1f} ms, max {max(during or [0.0]) * 1e3:.1f} ms",
    ]
    for line in lines:
        print(line, flush=True)
    first, floor = median(_first_answer(stale)), median(_first_answer(fresh))
    case = f"start-up, list of {jobs:,} jobs to rebuild: first health answer"
    figure(case, f"{first:.2f} s", f"list up to date {floor:.2f} s", first / floor, at_most=TARGET)
    figure(f"start-up, list of {jobs:,} jobs: rebuilt beside the server (info)", f"{rebuilt:.2f} s")
    figure(
        "health answers while the list is rebuilt, max latency (info)",
        f"{max(during or [0.0]) * 1e3:.1f} ms",
        f"median {median(during or [0.0]) * 1e3:.1f} ms",
    )
    return lines
