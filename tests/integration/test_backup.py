"""`aura backup`: a consistent copy of the log while another process appends to it, and the
documented restore (docs/operations.md) that a server then serves."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

from aura.projections.job import JobStatus, fold
from aura.store import DB_FILE_NAME, EventLog
from aura.store.backup import BACKUP_SUFFIX
from aura.tests.e2e.raw_http import AURA, aura_serve, clean_env
from aura.tests.job_logs import append_job, succeeded


def _backup(data_dir: Path, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*AURA, "backup", "--data-dir", str(data_dir), str(dest), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=120)


def _writer(data_dir: Path) -> subprocess.Popen[str]:
    """A writer in another process appending whole jobs (tests/job_logs.py)."""
    argv = [sys.executable, "-m", "aura.tests.job_logs", str(data_dir)]
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env()
    )


def _leftovers(folder: Path) -> list[Path]:
    return list(folder.glob(f"**/*{BACKUP_SUFFIX}*"))


def _last_seq(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return int(conn.execute("SELECT max(seq) FROM events").fetchone()[0])


async def _job_states(data_dir: Path) -> dict[str, JobStatus]:
    """Every job's status, folded from its events (whose versions must be contiguous)."""
    log = await EventLog.open(data_dir, readonly=True)
    try:
        job_ids = {rec.job_id for rec in await log.tail(0, 1_000_000)}
        statuses = {}
        for job_id in job_ids:
            records = await log.read(job_id)
            assert [r.version for r in records] == list(range(1, len(records) + 1))
            state = fold(records)
            assert state is not None
            statuses[job_id] = state.status
        return statuses
    finally:
        await log.close()


async def test_a_backup_taken_while_a_writer_appends_restores_and_serves(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    writer = _writer(data_dir)
    assert writer.stdin is not None and writer.stdout is not None
    backups = [tmp_path / f"backup-{i}" / DB_FILE_NAME for i in range(3)]
    try:
        assert writer.stdout.readline().strip() == "ready"
        for dest in backups:
            dest.parent.mkdir()
            done = _backup(data_dir, dest)
            assert done.returncode == 0, done
            assert "integrity_check ok" in done.stdout
    finally:
        writer.communicate(timeout=60)  # closes its stdin: the writer stops
    assert writer.returncode == 0
    seqs = [_last_seq(dest) for dest in backups]
    # each backup is a snapshot of a log that kept growing: taken while the writer appended
    assert seqs == sorted(set(seqs)) and seqs[-1] < _last_seq(data_dir / DB_FILE_NAME)
    for dest in backups:
        statuses = await _job_states(dest.parent)
        assert set(statuses.values()) == {JobStatus.SUCCEEDED}  # whole jobs only: one append each
    assert not _leftovers(tmp_path)

    # restore (docs/operations.md): with the server stopped, move the log's files aside and
    # copy the backup in its place
    aside = tmp_path / "aside"
    aside.mkdir()
    for path in data_dir.glob(f"{DB_FILE_NAME}*"):
        path.rename(aside / path.name)
    shutil.copyfile(backups[1], data_dir / DB_FILE_NAME)
    with aura_serve(data_dir) as served:
        url = f"http://127.0.0.1:{served.port}/api/jobs"
        async with aiohttp.ClientSession() as session:
            listed: list[str] = []
            params = {"limit": "200"}
            while True:  # every page
                async with session.get(url, params=params) as resp:
                    page = await resp.json()
                listed += [j["jobId"] for j in page["jobs"]]
                if page["nextCursor"] is None:
                    break
                params = {"limit": "200", "cursor": page["nextCursor"]}
            assert sorted(listed) == sorted(await _job_states(backups[1].parent))
            assert page["lastSeq"] == seqs[1]
            job_id = listed[0]
            async with session.get(f"{url}/{job_id}") as resp:
                assert (await resp.json())["status"] == "Succeeded"


async def test_a_backup_never_overwrites_unless_forced(tmp_path: Path) -> None:
    data_dir, dest = tmp_path / "data", tmp_path / "backup.db"
    log = await EventLog.open(data_dir)
    try:
        await append_job(log, succeeded())
    finally:
        await log.close()
    dest.write_bytes(b"keep me")
    refused = _backup(data_dir, dest)
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert dest.read_bytes() == b"keep me"
    forced = _backup(data_dir, dest, "--force")
    assert forced.returncode == 0, forced
    assert _last_seq(dest) > 0
    missing = _backup(tmp_path / "nowhere", tmp_path / "other.db")
    assert missing.returncode == 1 and "no log" in missing.stderr
    live = (data_dir / "aura.db").read_bytes()
    for itself in ("aura.db", "aura.db-wal", "./aura.db"):  # never the live log, even forced
        refused = _backup(data_dir, data_dir / itself, "--force")
        assert refused.returncode == 1 and "the log itself" in refused.stderr, refused
    assert (data_dir / "aura.db").read_bytes() == live
