"""What a SIGKILLed server may leave in its data folder, and what it must not: checks made from
outside the server, on its log (opened read-only, as a diagnosing reader would), its files and
its processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from runner_support import until

from aura.engine.files.job_files import TEMP_NAME, file_sha256
from aura.http.wire import ENCODER, WIRE_NAMES, event_data, job_view
from aura.projections.events import DECODER, JobInterrupted, Recorded
from aura.projections.job import JobState, JobStatus, fold
from aura.store.rows import SELECT, decode_rows
from aura.tests.e2e.raw_http import Served, stop_serve
from aura.tests.e2e.sse_client import SseEvent

__all__ = [
    "Crash",
    "check_recovered",
    "check_shown",
    "crash_left",
    "kill_server",
    "no_folder_processes",
    "outputs_intact",
    "read_log",
    "records_of",
    "view_of",
]

#: seconds a tool may take to die with its server (a parent-death signal acts at once)
TOOL_DEATH_LIMIT = 10.0


def read_only(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{(data_dir / 'aura.db').as_uri()}?mode=ro", uri=True)


def read_log(data_dir: Path) -> dict[str, list[Recorded]]:
    """Each job's records, once the database passes its integrity check; asserts that each
    job's versions are contiguous."""
    with contextlib.closing(read_only(data_dir)) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)], f"integrity_check: {integrity}"
        rows = db.execute(f"{SELECT} ORDER BY seq").fetchall()
    jobs: dict[str, list[Recorded]] = {}
    for rec in decode_rows(rows):
        jobs.setdefault(rec.job_id, []).append(rec)
    for job_id, records in jobs.items():
        versions = [r.version for r in records]
        assert versions == list(range(1, len(records) + 1)), f"job {job_id}: {versions}"
    return jobs


def _jobs_written_after(data_dir: Path, seq: int) -> set[str]:
    with contextlib.closing(read_only(data_dir)) as db:
        rows = db.execute("SELECT DISTINCT job_id FROM events WHERE seq > ?", (seq,))
        return {job_id for (job_id,) in rows}


def records_of(job_id: str, lines: list[dict[str, Any]]) -> list[Recorded]:
    """The records of a job's `GET /api/jobs/{id}/log` lines."""
    return [
        Recorded(x["seq"], job_id, x["version"], datetime.fromisoformat(x["ts"]), event)
        for x in lines
        for event in [DECODER.decode(json.dumps(x["data"]))]
    ]


def view_of(records: list[Recorded]) -> dict[str, Any]:
    """The job view the API answers for a fold of these records (without an ETA)."""
    state = fold(records)
    assert isinstance(state, JobState), "a job with no events"
    view: dict[str, Any] = json.loads(ENCODER.encode(job_view(state)))
    return view


def _without_eta(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "etaSeconds"}  # estimated, not folded


def check_shown(
    log: dict[str, list[Recorded]],
    messages: Mapping[str, list[SseEvent]],
    views: Sequence[dict[str, Any]],
) -> None:
    """Every SSE message and job view a client was shown is in the log as it was shown."""
    by_seq = {rec.seq: rec for records in log.values() for rec in records}
    for job_id, received in messages.items():
        for message in received:
            rec = by_seq.get(message.id)
            assert rec is not None and rec.job_id == job_id, (job_id, message)
            assert WIRE_NAMES[type(rec.event)] == message.event, (message, rec)
            assert json.loads(ENCODER.encode(event_data(rec))) == message.data, (message, rec)
    for view in views:
        records = [r for r in log[view["jobId"]] if r.seq <= view["lastSeq"]]
        folded = view_of(records)
        assert _without_eta(folded) == _without_eta(view), f"shown {view}, log {folded}"


def outputs_intact(state: JobState) -> None:
    """A Succeeded job's video is there, whole: the size and checksum recorded."""
    if state.status is JobStatus.SUCCEEDED:
        assert state.output is not None, state
        video = Path(state.output.video_path)
        size = video.stat().st_size
        assert size == state.output.size_bytes > 0, f"{video}: {size} bytes, {state.output}"
        assert file_sha256(video) == state.output.sha256, f"{video} is not as recorded"


# ---- processes ---------------------------------------------------------------------------


def kill_server(served: Served) -> int:
    """SIGKILL the server; returns how many tools it was running.

    The tools are stopped (SIGSTOP) first: one that would outlive its server then stays for
    `no_folder_processes` to find, however soon it would have finished. A child not yet past
    setting its parent-death signal is left running: still between fork and exec (named after
    Python), or in `setpriv`, which sets it (engine/tools/process.py); past it, the guard that
    follows finds its parent gone and runs nothing.
    """
    tools = [
        p
        for p in psutil.Process(served.proc.pid).children(recursive=True)
        if not _name(p).startswith(("python", "setpriv"))
    ]
    for tool in tools:
        with contextlib.suppress(psutil.NoSuchProcess):
            tool.suspend()
    status = stop_serve(served.proc, signal.SIGKILL)
    assert status == -signal.SIGKILL, (status, served.log_lines()[-20:])
    return len(tools)


def _name(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return str(proc.name())
    return ""


def _folder_processes(data_dir: Path) -> list[str]:
    """Live processes other than this one whose command line or working folder is in the data
    folder."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        if proc.pid == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        where = " ".join(info["cmdline"] or ()) + " cwd=" + str(info["cwd"])
        if str(data_dir) in where:
            found.append(f"{proc.pid}: {where}")
    return found


async def no_folder_processes(data_dir: Path) -> None:
    """No process of the data folder (ffmpeg, espeak-ng) outlives its server."""
    with contextlib.suppress(TimeoutError):
        await until(lambda: not _folder_processes(data_dir), TOOL_DEATH_LIMIT)
    survivors = _folder_processes(data_dir)
    for line in survivors:  # leave none behind the test
        with contextlib.suppress(psutil.Error):
            psutil.Process(int(line.split(":")[0])).kill()
    assert not survivors, f"outlived their server: {survivors}"


# ---- a crash and the recovery after it ---------------------------------------------------


@dataclass(frozen=True)
class Crash:
    """What a kill left: the log's last seq, the jobs it showed running, the temp files."""

    last_seq: int
    running: tuple[str, ...]
    temp_files: tuple[Path, ...]


def crash_left(data_dir: Path, log: dict[str, list[Recorded]]) -> Crash:
    """What the kill left, checked: whole outputs, no zero-byte file (temp files may remain)."""
    states = {job_id: fold(records) for job_id, records in log.items()}
    running = []
    for job_id, state in states.items():
        assert isinstance(state, JobState), job_id
        outputs_intact(state)
        if state.status is JobStatus.RUNNING:
            running.append(job_id)
    files = [p for p in (data_dir / "jobs").rglob("*") if p.is_file()]
    temps = tuple(p for p in files if TEMP_NAME.search(p.name))
    empty = [p for p in files if p not in temps and p.stat().st_size == 0]
    assert not empty, f"zero-byte files: {empty}"
    last_seq = max(r.seq for records in log.values() for r in records)
    return Crash(last_seq, tuple(running), temps)


async def check_recovered(data_dir: Path, crash: Crash, limit: float) -> dict[str, list[Recorded]]:
    """Recovery put every job the crash caught running back to work (`JobInterrupted`) and
    removed its temp files (waited for: it may run while the server already listens). Returns
    the log."""

    def recovered() -> bool:
        written = _jobs_written_after(data_dir, crash.last_seq)
        return written.issuperset(crash.running) and not any(p.exists() for p in crash.temp_files)

    with contextlib.suppress(TimeoutError):
        await until(recovered, limit)
    log = read_log(data_dir)
    for job_id in crash.running:
        first_new = next((r for r in log[job_id] if r.seq > crash.last_seq), None)
        assert first_new is not None, f"job {job_id} left Running after the restart"
        assert isinstance(first_new.event, JobInterrupted), first_new
    left = [p for p in crash.temp_files if p.exists()]
    assert not left, f"temp files left by the crash, still there: {left}"
    return log
