"""`aura compact` against a real `aura serve`: refused while it runs; after it, the restarted
server shows every job as before, resumes old Last-Event-IDs exactly, and says which jobs'
files `--prune-outputs` deleted (and deleted nothing outside their folders)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from aura.store import DB_FILE_NAME, EventLog
from aura.tests.e2e.raw_http import AURA, aura_serve, clean_env
from aura.tests.e2e.sse_client import SseEvent, read_events
from aura.tests.job_logs import JOBS, append_job


async def _build(data_dir: Path, outside: Path) -> list[str]:
    log = await EventLog.open(data_dir)
    try:
        job_ids = [await append_job(log, make()) for make in JOBS.values()]
    finally:
        await log.close()
    for job_id in job_ids[:3]:  # the first three have work folders, one with a link out
        folder = data_dir / "jobs" / job_id
        folder.mkdir(parents=True)
        (folder / "final.mp4").write_bytes(b"mp4!")
        (folder / "broll.out").write_bytes(b"x" * 1000)
    (data_dir / "jobs" / job_ids[0] / "elsewhere").symlink_to(outside)
    return job_ids


async def _job(session: aiohttp.ClientSession, base: str, job_id: str) -> dict[str, Any]:
    async with session.get(f"{base}/api/jobs/{job_id}") as resp:
        assert resp.status == 200
        view: dict[str, Any] = await resp.json()
        return view


async def _stream(
    session: aiohttp.ClientSession, base: str, job_id: str, after: int | None = None
) -> list[SseEvent]:
    headers = {} if after is None else {"Last-Event-ID": str(after)}
    async with session.get(f"{base}/api/jobs/{job_id}/events", headers=headers) as resp:
        assert resp.status == 200
        return await read_events(resp)


def _compact(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*AURA, "compact", "--data-dir", str(data_dir), "--older-than", "0s", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60)


def _replay(data_dir: Path, job_id: str) -> subprocess.CompletedProcess[str]:
    argv = [*AURA, "replay", job_id, "--data-dir", str(data_dir)]
    return subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60)


async def test_compaction_under_a_real_server(tmp_path: Path) -> None:
    data_dir, outside = tmp_path / "data", tmp_path / "outside.txt"
    outside.write_text("not Aura's")
    job_ids = await _build(data_dir, outside)
    db = data_dir / DB_FILE_NAME
    async with aiohttp.ClientSession() as session:
        with aura_serve(data_dir) as served:
            base = f"http://127.0.0.1:{served.port}"
            views = {j: await _job(session, base, j) for j in job_ids}
            streams = {j: await _stream(session, base, j) for j in job_ids}
            size = db.stat().st_size
            refused = _compact(data_dir)
            assert refused.returncode == 3 and "in use" in refused.stderr, refused
            assert db.stat().st_size == size

        done = _compact(data_dir, "--prune-outputs")
        assert done.returncode == 0, done
        assert "outputs pruned: 3 jobs (7 files" in done.stdout, done.stdout
        assert db.stat().st_size < size / 2

        with aura_serve(data_dir) as served:
            base = f"http://127.0.0.1:{served.port}"
            for i, job_id in enumerate(job_ids):
                view, expected = await _job(session, base, job_id), dict(views[job_id])
                if i < 3:  # pruned: said so by an event after the job's last one
                    assert view.pop("outputPrunedUtc") is not None
                    assert view.pop("lastSeq") > expected.pop("lastSeq")
                    expected.pop("outputPrunedUtc")
                assert view == expected
                before = streams[job_id]
                kept = [e for e in await _stream(session, base, job_id) if e.id <= before[-1].id]
                assert {e.event for e in before if e not in kept} == {"step-progress"}
                assert all(e in before for e in kept)
                # an id from before, of a dropped tick or of a kept event, resumes exactly
                dropped = next(e.id for e in before if e not in kept)
                for after in (dropped, kept[2].id):
                    resumed = await _stream(session, base, job_id, after)
                    assert resumed == [e for e in kept if e.id > after]
            async with session.get(f"{base}/api/jobs/{job_ids[0]}/output") as resp:
                assert resp.status == 404
    assert not (data_dir / "jobs" / job_ids[0]).exists()
    assert outside.read_text() == "not Aura's"
    timeline = _replay(data_dir, job_ids[0])
    pruned = [line for line in timeline.stdout.splitlines() if "OutputsPruned" in line]
    assert len(pruned) == 1 and "files (" in pruned[0] and "bytes) deleted" in pruned[0], timeline
