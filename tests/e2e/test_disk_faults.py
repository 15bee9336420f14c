"""Disk and permission faults: a real `aura serve` whose data folder runs out of space or
refuses writes.

`tmpfs`: the data folder is a tmpfs of a fixed size, a real small file system (root may mount
one). A real render is held once, right before its mux step's ffmpeg writes the finished video
(a wrapper of the real ffmpeg stops itself: `HeldFfmpeg`), the file system is filled with a
ballast file while it waits, and the render goes on into the full disk. Preflight has checked
the free space by then, as it would on a disk that another program fills during the render.

`injected`: the same faults without a mount, on a machine that refuses one (and always, so the
fallback keeps working): the mux step's output is a link to /dev/full, whose every write fails
with a real ENOSPC from the kernel; the log's refusal is a trigger that aborts every insert,
which is what the engine sees of a log that cannot grow (only `details.full` and the code the
failure is recorded with differ: a full disk says OutOfDiskSpace), and which `aura doctor`,
probing the folder from outside, cannot see. A read-only data folder is a tmpfs remounted
read-only (which stops root too), or without a mount a folder without write permission (which
stops only a user who is not root).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import psutil  # type: ignore[import-untyped]
import pytest
from runner_support import temp_files, types_of

from aura.engine.files.atomic import TEMP_MARKER
from aura.http.wire import job_view
from aura.projections.events import Recorded
from aura.projections.job import fold
from aura.store.log import DB_FILE_NAME, EventLog
from aura.tests.e2e.raw_http import AURA, aura_serve, clean_env

pytestmark = pytest.mark.slow

#: big enough for preflight's free-space check of the brief below (its estimate plus 200 MiB)
FS_SIZE = "256m"
#: free space left for the log when only the render's output must find the disk full: a few
#: times what a commit of the job's failure needs, less than half the finished video (230 KB)
HEADROOM = 96 * 1024
BODY = {
    "preset": "default",
    "brief": {
        "title": "Disk faults",
        "script": ["One short line.", "And another.", "A third line, for a longer video."],
    },
    "options": {"quality": "draft", "encoder": "x264"},
}
#: seconds a test waits for what it expects (a render, a retry of the log every 8 s at most)
WAIT = 90.0
#: the temp name of the mux step's video, which the held ffmpeg is told to write
VIDEO_TEMP = f".video{TEMP_MARKER}"


# ---- a real small file system ------------------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def mount_refused() -> str | None:
    """Why this machine refuses to mount a tmpfs (no root, no CAP_SYS_ADMIN); None if it can."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", folder)
        except (OSError, subprocess.CalledProcessError) as e:
            return str(getattr(e, "stderr", "") or e).strip()
        subprocess.run(["umount", folder], check=True)
    return None


def needs_mount(mode: str, refused: str | None, instead: str = "injected") -> None:
    if mode == "tmpfs" and refused is not None:
        reason = refused.splitlines()[0] if refused else "refused"
        pytest.skip(f"this machine refuses to mount a tmpfs ({reason}); {instead!r} runs instead")


@contextmanager
def data_folder(folder: Path, mode: str) -> Iterator[Path]:
    """`folder`: a tmpfs of FS_SIZE (`tmpfs`, unmounted however the test ends) or a plain
    folder on the disk the tests run on."""
    folder.mkdir(parents=True)
    if mode != "tmpfs":
        yield folder
        return
    _mount("-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        done = subprocess.run(["umount", str(folder)], capture_output=True)
        if done.returncode != 0:  # still busy (a process the test left): detach it anyway
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill `folder`'s file system to the last byte with a ballast file, then give `leave`
    bytes back; the ballast's path."""
    ballast = folder / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    if leave:
        os.truncate(ballast, ballast.stat().st_size - leave)
    return ballast


@contextmanager
def refusing_log(data_dir: Path) -> Iterator[None]:
    """The log refuses every new event until the block ends (`injected`)."""
    with contextlib.closing(sqlite3.connect(data_dir / DB_FILE_NAME)) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_all BEFORE INSERT ON events "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O refused (injected)'); END"
        )
        conn.commit()
        try:
            yield
        finally:
            conn.execute("DROP TRIGGER refuse_all")
            conn.commit()


# ---- the render's mux step, held or sent into a full device ------------------------------


class HeldFfmpeg:
    """A wrapper of the real ffmpeg (AURA_FFMPEG) that, once, right before the mux step's
    ffmpeg writes the finished video, stops itself (SIGSTOP, until `release`) or, with
    `to_dev_full`, makes that video a link to /dev/full (every write: ENOSPC)."""

    def __init__(self, folder: Path, *, to_dev_full: bool = False) -> None:
        real = shutil.which("ffmpeg")
        assert real is not None
        folder.mkdir()
        self.pid_file = folder / "held.pid"
        self.path = folder / "ffmpeg"
        act = 'ln -s /dev/full "$a"' if to_dev_full else "kill -STOP $$"
        self.path.write_text(
            "#!/bin/sh\n"
            'for a in "$@"; do case "$a" in *' + f"'{VIDEO_TEMP}'" + "*)\n"
            f"  if [ ! -e '{self.pid_file}' ]; then\n"
            f"    echo $$ > '{self.pid_file}.tmp' && mv '{self.pid_file}.tmp' '{self.pid_file}'\n"
            f"    {act}\n"
            "  fi;;\n"
            "esac; done\n"
            f"exec '{real}' \"$@\"\n"
        )
        self.path.chmod(0o755)

    def wait_held(self) -> psutil.Process:
        """The held ffmpeg, once it has stopped itself."""
        until(self.pid_file.exists, "the mux step's ffmpeg to start")
        proc = psutil.Process(int(self.pid_file.read_text()))
        until(lambda: proc.status() == psutil.STATUS_STOPPED, "the held ffmpeg to stop")
        return proc

    @staticmethod
    def release(proc: psutil.Process) -> None:
        proc.send_signal(signal.SIGCONT)  # it goes on, into whatever the disk is now


def until(predicate: Callable[[], object], what: str, limit: float = WAIT) -> None:
    """Wait for a condition the test cannot be told of (a file, a process, a server's state)."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"waited {limit:g} s for {what}"
        time.sleep(0.1)


# ---- the server, from outside ------------------------------------------------------------


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request to the server; its status and JSON body (None when empty)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def job(port: int, job_id: str) -> dict[str, Any]:
    status, body = api(port, "GET", f"/api/jobs/{job_id}")
    assert status == 200, body
    return dict(body)


def wait_job(
    port: int, job_id: str, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The job once `done` holds for it."""
    until(lambda: done(job(port, job_id)), what)
    return job(port, job_id)


def submit(port: int) -> str:
    status, body = api(port, "POST", "/api/jobs", BODY)
    assert status == 201, body
    return str(body["jobId"])


def findings(port: int) -> dict[str, dict[str, Any]]:
    """The server's system check, by check name."""
    return {f["check"]: f for f in api(port, "GET", "/api/system-check")[1]["findings"]}


def doctor(data_dir: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """`aura doctor --json` on the data folder: its exit status and findings by name."""
    argv = [*AURA, "doctor", "--json", "--data-dir", str(data_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=WAIT)
    return done.returncode, {f["check"]: f for f in json.loads(done.stdout)}


# ---- the log, read beside the server -----------------------------------------------------


def assert_log_consistent(data_dir: Path, port: int, job_id: str) -> list[Recorded]:
    """The database passes integrity_check, the job's versions are contiguous and the server's
    view of it is the fold of its events; returns the events."""
    uri = f"{(data_dir / DB_FILE_NAME).as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    records = asyncio.run(_read(data_dir, job_id))
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    state = fold(records)
    assert state is not None
    folded = json.loads(msgspec.json.encode(job_view(state)))
    assert job(port, job_id) == folded | {"unrecorded": None}
    return records


async def _read(data_dir: Path, job_id: str) -> list[Recorded]:
    async with await EventLog.open(data_dir, readonly=True) as log:
        return list(await log.read(job_id))


# ---- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tmpfs", "injected"])
def test_a_disk_full_during_a_step_fails_it_out_of_disk_space_and_a_retry_reuses_the_rest(
    tmp_path: Path, mode: str, mount_refused: str | None
) -> None:
    needs_mount(mode, mount_refused)
    held = HeldFfmpeg(tmp_path / "bin", to_dev_full=mode == "injected")
    with (
        data_folder(tmp_path / "data", mode) as data,
        aura_serve(data, AURA_FFMPEG=str(held.path)) as srv,
    ):
        job_id = submit(srv.port)
        if mode == "tmpfs":
            ffmpeg = held.wait_held()
            ballast = fill(data, leave=HEADROOM)  # room for the log, none for the video
            held.release(ffmpeg)
        failed = wait_job(srv.port, job_id, lambda j: j["status"] == "Failed", "the failure")
        # ffmpeg's write failed, or (a progress tick while it wrote) the log's: both say so
        error = failed["errors"][-1]
        assert error["code"] == "OutOfDiskSpace", error
        assert "No space left on device" in error["message"] or "full" in error["message"]
        assert [s["status"] for s in failed["steps"]][-1] == "Failed"  # mux
        assert failed["unrecorded"] is None
        assert temp_files(data) == []
        # the server keeps serving, and says what is wrong
        status, health = api(srv.port, "GET", "/api/health")
        assert (status, health["status"]) == (200, "ok")
        status, listing = api(srv.port, "GET", "/api/jobs")
        assert status == 200 and listing["jobs"][0]["status"] == "Failed"
        if mode == "tmpfs":
            assert findings(srv.port)["disk"]["code"] == "OutOfDiskSpace"
            ballast.unlink()
        assert_log_consistent(data, srv.port, job_id)

        status, retried = api(srv.port, "POST", f"/api/jobs/{job_id}/retry")
        assert status == 202, retried
        wait_job(srv.port, job_id, lambda j: j["status"] == "Succeeded", "the retry")
        records = assert_log_consistent(data, srv.port, job_id)
        assert temp_files(data) == []
    assert [t for t in types_of(records, attempt=2) if "Progressed" not in t] == [
        "JobRetryRequested",
        "JobStarted",
        "StepStarted:preflight",  # records no artifact: always runs again
        "StepSucceeded:preflight",
        "StepSkipped:narration",  # reused: not run again
        "StepSkipped:broll",
        "StepSkipped:subtitles",
        "StepStarted:mux",
        "StepSucceeded:mux",
        "JobSucceeded",
    ]


@pytest.mark.parametrize("mode", ["tmpfs", "injected"])
def test_a_failure_the_log_cannot_record_is_shown_until_the_log_takes_writes(
    tmp_path: Path, mode: str, mount_refused: str | None
) -> None:
    needs_mount(mode, mount_refused)
    full = mode == "tmpfs"
    held = HeldFfmpeg(tmp_path / "bin")
    with (
        data_folder(tmp_path / "data", mode) as data,
        aura_serve(data, AURA_FFMPEG=str(held.path)) as srv,
    ):
        job_id = submit(srv.port)
        ffmpeg = held.wait_held()
        with contextlib.nullcontext() if full else refusing_log(data):
            ballast = fill(data) if full else None  # to the last byte: the log cannot grow
            held.release(ffmpeg)
            waiting = wait_job(
                srv.port, job_id, lambda j: j["unrecorded"] is not None, "the log to refuse"
            )
            # the log still says Running, and the job says why that is behind
            assert (waiting["status"], waiting["errors"]) == ("Running", [])
            refused = waiting["unrecorded"]
            assert refused["code"] == "LogUnwritable" and refused["details"]["full"] is full
            assert "its failure is not recorded yet" in refused["message"], refused
            status, health = api(srv.port, "GET", "/api/health")
            assert (status, health["status"]) == (503, "degraded")
            assert [p["code"] for p in health["problems"]] == ["LogUnwritable"]
            # open to anyone: no job named, no store error quoted (the job and system check say)
            assert set(health["problems"][0]["details"]) == {"full", "sinceUtc"}
            assert job_id not in json.dumps(health), health
            status, problem = api(srv.port, "POST", f"/api/jobs/{job_id}/retry")
            assert (status, problem["code"]) == (503, "LogUnwritable"), problem
            assert findings(srv.port)["log"]["code"] == "LogUnwritable"
            if ballast is not None:  # doctor, from outside, finds the folder full
                status, outside = doctor(data)
                assert status == 1 and outside["log"]["code"] == "LogUnwritable", outside
                assert "No space left on device" in outside["log"]["message"]
                ballast.unlink()
        # the log takes writes again: the next try records the failure
        failed = wait_job(srv.port, job_id, lambda j: j["status"] == "Failed", "the record")
        assert failed["unrecorded"] is None
        assert failed["errors"][-1]["code"] == ("OutOfDiskSpace" if full else "Internal")
        status, health = api(srv.port, "GET", "/api/health")
        assert (status, health["status"], health["problems"]) == (200, "ok", [])
        assert findings(srv.port)["log"]["status"] == "ok"
        assert doctor(data)[1]["log"]["status"] == "ok"
        assert_log_consistent(data, srv.port, job_id)
        assert temp_files(data) == []
        status, retried = api(srv.port, "POST", f"/api/jobs/{job_id}/retry")
        assert status == 202, retried
        wait_job(srv.port, job_id, lambda j: j["status"] == "Succeeded", "the retry")


@pytest.mark.parametrize("mode", ["tmpfs", "permissions"])
def test_a_data_folder_that_refuses_writes_stops_serve_and_doctor_says_why(
    tmp_path: Path, mode: str, mount_refused: str | None
) -> None:
    needs_mount(mode, mount_refused, instead="permissions (unless run as root)")
    if mode == "permissions" and os.geteuid() == 0:
        pytest.skip("root writes whatever the permissions say; 'tmpfs' (a read-only mount) runs")
    with data_folder(tmp_path / "data", mode) as data:
        with aura_serve(data):  # a data folder with its log, as a server leaves it
            pass
        if mode == "tmpfs":
            _mount("-o", "remount,ro", str(data))
        else:
            data.chmod(0o555)
        try:
            with pytest.raises(OSError) as refused:  # for root too, on the read-only mount
                (data / "probe").write_bytes(b"x")
            reason = os.strerror(refused.value.errno or 0)
            assert reason in ("Read-only file system", "Permission denied")
            argv = [*AURA, "serve", "--data-dir", str(data), "--port", "0"]
            done = subprocess.run(
                argv, capture_output=True, text=True, env=clean_env(), timeout=WAIT
            )
            assert done.returncode == 1, done
            assert "OutputDirectoryNotWritable" in done.stderr, done.stderr
            assert reason in done.stderr and "Traceback" not in done.stderr, done.stderr
            status, found = doctor(data)
            assert status == 1
            assert found["log"]["code"] == "LogUnwritable", found["log"]
            assert reason in found["log"]["message"]
            assert found["output"]["code"] == "OutputDirectoryNotWritable"
        finally:
            if mode == "permissions":  # so that pytest can clean it up
                data.chmod(0o755)
