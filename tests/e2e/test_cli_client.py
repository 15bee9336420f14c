"""`aura serve` and the client commands as real processes on 127.0.0.1, with real renders."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

AURA = [sys.executable, "-m", "aura.cli.main"]
RENDER = [
    "--title",
    "CLI test",
    "--line",
    "One short line.",
    "--line",
    "And another.",
    "--quality",
    "draft",
    "--encoder",
    "x264",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURA_")}
    env.update(extra)
    return env


@contextmanager
def server(
    data_dir: Path, port: int = 0, open_files: tuple[int, int] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`aura serve` in its own process (started with `open_files` as its (soft, hard) limit of
    open files, if given); yields it and the URL it printed."""

    argv = [*AURA, "serve", "--data-dir", str(data_dir), "--port", str(port)]
    if open_files is not None:  # the shell sets the limits, then becomes the server
        soft, hard = open_files
        script = f'ulimit -Sn {soft} && ulimit -Hn {hard} && exec "$@"'
        argv = ["sh", "-c", script, "sh", *argv]
    # its log (stderr) to a file: a pipe nobody drains would fill and stall the server
    log = data_dir.parent / f"{data_dir.name}-stderr.log"
    with log.open("a") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, env=clean_env()
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (line, log.read_text())
        yield proc, line.split("listening on ", 1)[1].split()[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)  # also closes the pipe
        assert proc.returncode == 0, (rest, log.read_text())


def aura(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AURA, *args], capture_output=True, text=True, timeout=120, env=env or clean_env()
    )


def log_of(url: str, job_id: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/jobs/{job_id}/log") as resp:
        return [json.loads(line) for line in resp.read().splitlines()]


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    result = aura("serve", "--data-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "AURA_TOKEN" in result.stderr and "0.0.0.0" in result.stderr
    assert not (tmp_path / "aura.db").exists()


@pytest.mark.parametrize("token", [" " * 20, "short", "sixteen chars ok"])
def test_serve_refuses_a_blank_short_or_spaced_token(tmp_path: Path, token: str) -> None:
    result = aura(
        "serve",
        "--data-dir",
        str(tmp_path),
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        env=clean_env(AURA_TOKEN=token),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("aura serve: AURA_TOKEN is not usable"), result.stderr
    if token.strip():
        assert token not in result.stderr  # the refusal never echoes the token
    assert not (tmp_path / "aura.db").exists()


def test_serve_on_a_data_dir_that_is_a_file_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    result = aura("serve", "--data-dir", str(tmp_path / "afile"), "--port", "0")
    assert result.returncode == 1, result
    assert "OutputDirectoryNotWritable" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_url_is_a_usage_error_not_a_traceback() -> None:
    for url in ("127.0.0.1:8765", "http://127.0.0.1:99999", "ftp://127.0.0.1", "http://"):
        result = aura("watch", "abc", "--url", url)
        assert result.returncode == 2, result
        assert "argument --url" in result.stderr and url in result.stderr
        assert "Traceback" not in result.stderr
    result = aura("cancel", "abc", env=clean_env(AURA_URL="localhost:8765"))
    assert result.returncode == 2 and "localhost:8765" in result.stderr


def test_a_server_that_is_not_running_is_a_one_line_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("watch", "abc"), ("cancel", "abc"), ("submit",)):
        result = aura(*args, "--url", url)
        assert result.returncode == 2, result
        assert result.stderr.count("\n") == 1 and url in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_serve_raises_its_open_files_limit_so_many_clients_do_not_lock_everyone_out(
    tmp_path: Path,
) -> None:
    with server(tmp_path / "data", open_files=(64, 4096)) as (proc, url):
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        [line] = [row for row in limits.splitlines() if row.startswith("Max open files")]
        assert line.split()[3:5] == ["4096", "4096"], line
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(150)]  # > 64
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=10) as resp:
                assert json.loads(resp.read())["status"] == "ok"
        finally:
            for conn in idle:
                conn.close()


def test_a_job_id_that_could_leave_its_url_path_is_a_usage_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # refused before any request: none is listening
    for job_id in ("../../api/health", "x/../../../api/jobs", "x?y=1", "..", "a b", ""):
        for command in ("watch", "cancel", "retry", "rerun"):
            result = aura(command, job_id, "--url", url)
            assert result.returncode == 2, result
            assert "is not a job id" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr


class _NotAura(http.server.BaseHTTPRequestHandler):
    """A web server that is not Aura: 200 with a page for GET, 501 with a page for POST."""

    def do_GET(self) -> None:
        if "json" in self.path:  # JSON, but no job in it
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._page(200)

    def do_POST(self) -> None:
        self._page(501)

    def _page(self, status: int) -> None:
        body = b"<!DOCTYPE html>\n<html>\n<p>Hello</p>\n</html>\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_that_is_not_aura_is_a_one_line_error() -> None:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAura) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{other.server_address[1]}"
        try:
            for args in (("watch", "abc"), ("watch", "json"), ("cancel", "abc"), ("submit",)):
                result = aura(*args, "--url", url)
                assert result.returncode in (1, 2), result
                assert "Traceback" not in result.stderr, result.stderr
                assert result.stderr.count("\n") == 1 and url in result.stderr, result.stderr
        finally:
            other.shutdown()


def test_an_idempotency_key_that_cannot_be_a_header_is_a_usage_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # refused before any request
    for key in ("a\nb", "", "x" * 201, "caf\u00e9"):
        result = aura("submit", "--url", url, "--idempotency-key", key)
        assert result.returncode == 2, result
        assert "argument --idempotency-key" in result.stderr, result.stderr


def test_a_missing_or_malformed_brief_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{bad")
    (tmp_path / "list.json").write_text("[1]")
    url = f"http://127.0.0.1:{free_port()}"  # the brief is read before the server is called
    for name in ("missing.json", "bad.json", "list.json"):
        brief = str(tmp_path / name)
        result = aura("submit", "--url", url, "--brief", brief)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and brief in result.stderr, result.stderr


def test_a_malformed_environment_setting_is_a_one_line_error(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    cases = [
        (("serve", "--port", "0"), "AURA_MAX_CONCURRENT_JOBS", "many"),
        (("doctor",), "AURA_DURABILITY", "bogus"),
        (("sample",), "AURA_FFMPEG_THREADS", "lots"),
        (("serve",), "AURA_PORT", "http"),
        (("serve",), "AURA_PORT", "70000"),
        (("serve",), "AURA_PORT", "-5"),
    ]
    for args, var, value in cases:
        result = aura(*args, "--data-dir", data, env=clean_env(**{var: value}))
        assert result.returncode in (1, 2), result
        assert "Traceback" not in result.stderr, result.stderr
        assert value in result.stderr.splitlines()[-1], result.stderr
    # named, never quoted: a base URL may hold a password
    base = "user:pwSECRET@api.example.invalid/v1"
    result = aura("serve", "--data-dir", data, env=clean_env(AURA_OPENAI_BASE_URL=base))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result
    assert "InvalidInput:AURA_OPENAI_BASE_URL" in result.stderr and "SECRET" not in result.stderr
    assert not (tmp_path / "data" / "aura.db").exists()


def test_a_file_where_the_jobs_folder_goes_fails_the_job_without_a_traceback(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "jobs").write_text("not a folder")
    result = aura("sample", "--quality", "draft", "--data-dir", str(data))
    assert result.returncode == 1, result
    assert "OutputDirectoryNotWritable" in result.stdout + result.stderr, result
    assert "Traceback" not in result.stderr, result.stderr


def test_a_data_folder_under_a_regular_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    data = str(tmp_path / "afile" / "data")
    for args in (("serve", "--port", "0"), ("sample", "--quality", "draft")):
        result = aura(*args, "--data-dir", data)
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "OutputDirectoryNotWritable" in result.stderr and data in result.stderr


@pytest.mark.slow
def test_submit_watch_retry_and_cancel_against_a_running_server(tmp_path: Path) -> None:
    with server(tmp_path / "data") as (_, url):
        result = aura("submit", "--url", url, *RENDER, "--watch")
        assert result.returncode == 0, result.stderr
        job_id, *lines = result.stdout.splitlines()
        assert lines[-1].startswith("done: ") and lines[-1].endswith(" s)")
        changes = [line.split(":")[0] for line in lines if ": " in line and " " in line][:-1]
        expected = [
            f"{e['type']}" + (f" {e['step']}" if e["step"] else "")
            for e in log_of(url, job_id)
            if e["type"] != "StepProgressed"
        ]
        assert changes == expected
        again = aura("watch", job_id, "--url", url)  # a finished job: replays and ends
        assert again.returncode == 0 and again.stdout.splitlines() == lines
        cancel = aura("cancel", job_id, "--url", url)
        assert cancel.returncode == 1 and "InvalidState" in cancel.stderr
        retry = aura("retry", job_id, "--url", url)
        assert retry.returncode == 1 and "InvalidState" in retry.stderr
        rerun = aura("rerun", job_id, "--url", url)
        assert rerun.returncode == 0, rerun.stderr
        new_id = rerun.stdout.strip()
        assert new_id != job_id and log_of(url, new_id)[0]["data"]["rerunOf"] == job_id


@pytest.mark.slow
def test_watch_resumes_by_itself_across_a_server_restart(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    with server(data, port) as (_, url):
        job_id = aura("submit", "--url", url, *RENDER).stdout.strip()
        watcher = subprocess.Popen(
            [*AURA, "watch", job_id, "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        assert watcher.stdout is not None
        seen = [watcher.stdout.readline()]
        while "StepStarted" not in seen[-1]:
            assert seen[-1], f"the watcher ended early: {seen}"  # EOF: it exited
            seen.append(watcher.stdout.readline())
    # the server is gone mid-render; a new one on the same port recovers the job
    with server(data, port):
        # read through the same buffered pipe object (communicate() would skip its buffer)
        out = watcher.stdout.read()
        assert watcher.stderr is not None
        err = watcher.stderr.read()
        assert watcher.wait(timeout=120) == 0, err
        watcher.stdout.close()
        watcher.stderr.close()
        lines = [line.rstrip("\n") for line in seen] + out.splitlines()
        changes = [line.split(":")[0] for line in lines[:-1]]
        expected = [
            f"{e['type']}" + (f" {e['step']}" if e["step"] else "")
            for e in log_of(url, job_id)
            if e["type"] != "StepProgressed"
        ]
        assert changes == expected  # every change once, in order, across the drop
        assert any(c.startswith("JobInterrupted") for c in changes)
