"""`aura serve`'s log, read from a real process: one JSON object a line on a stderr that is no
terminal (readable text when forced), an access record per request, the correlation id of a
problem on its error's line, the job id on a job's, a rotating file in the data folder, and
never a token or a key."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aura.engine.errors.redaction import REDACTED
from aura.tests.e2e.raw_http import (
    ANSWER_TIMEOUT,
    AURA,
    Answer,
    Served,
    aura_serve,
    clean_env,
    connect,
    exchange,
    read_head,
)

TOKEN = "tokencanary-7f3a9c1e5b2d4680"
KEY = "sk-keycanary0123456789abcdef"
#: the rotating file's bounds the server runs with
FILE_BYTES = 1024
FILE_COUNT = 2
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("logging") / "data"
    data.mkdir()
    (data / "jobs").write_text("a file where the jobs' folders go: a job run fails, and logs")
    env = {
        "AURA_TOKEN": TOKEN,
        "OPENAI_API_KEY": KEY,
        "AURA_LOG_FILE": "logs/aura.log",
        "AURA_LOG_FILE_BYTES": str(FILE_BYTES),
        "AURA_LOG_FILE_COUNT": str(FILE_COUNT),
    }
    with aura_serve(data, **env) as server:
        yield server


def call(
    port: int, method: str, path: str, *headers: str, body: bytes = b"", token: bool = True
) -> Answer:
    """One request on a new connection, with the token unless `token` is False."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if token:
        lines.append(f"Authorization: Bearer {TOKEN}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return exchange(port, ("\r\n".join([*lines, "", ""])).encode() + body)


def access_of(served: Served, correlation: str) -> dict[str, Any]:
    """The access record of the request answered with this correlation id."""
    return served.wait_log_record(
        lambda r: r.get("logger") == "aura.access" and r.get("correlation_id") == correlation
    )


def test_every_line_is_a_json_record_with_time_level_logger_and_message(served: Served) -> None:
    call(served.port, "GET", "/api/health")
    records = served.log_records()
    assert records and all("line" not in r for r in records), served.log.read_text()
    for record in records:
        assert TIME.match(record["time"]), record
        assert record["level"] in LEVELS and record["logger"] and record["message"], record
    # the first of the server's own (a warning about the backlog may come before it)
    start = next(r for r in records if r["logger"] == "aura.serve" and r["level"] == "INFO")
    assert start["message"].startswith(f"listening on http://127.0.0.1:{served.port}")


def test_each_request_has_an_access_record_with_its_status(served: Served) -> None:
    ok = call(served.port, "GET", "/api/health", token=False)
    refused = call(served.port, "GET", "/api/jobs?limit=5", token=False)
    assert (ok.status, refused.status) == (200, 401)
    for answer, path in ((ok, "/api/health"), (refused, "/api/jobs")):
        record = access_of(served, answer.headers["x-correlation-id"])
        assert record["level"] == "INFO", record
        assert (record["method"], record["path"], record["status"]) == ("GET", path, answer.status)
        assert record["remote"] == "127.0.0.1" and record["bytes"] > len(answer.body)
        assert record["duration_ms"] >= 0
        assert record["message"].startswith(f"GET {path} {answer.status} "), record


def test_an_error_line_names_the_problems_correlation_id(served: Served) -> None:
    before = len(served.log_lines())
    malformed = "X-A: a\x00b"  # aiohttp's parser refuses it: 400, and one line logged
    answer = call(served.port, "GET", "/api/health", malformed)
    problem = json.loads(answer.body)
    assert answer.status == 400 and problem["code"] == "BadRequest", answer
    correlation = problem["correlationId"]
    served.wait_log_lines(before + 1)
    line = served.wait_log_record(
        lambda r: r.get("logger") == "aura.http" and "400" in r["message"]
    )
    assert line["level"] == "WARNING" and line["correlation_id"] == correlation, line
    record = access_of(served, correlation)
    assert (record["method"], record["path"], record["status"]) == ("-", "-", 400)


def test_a_job_runs_lines_name_the_job_and_its_correlation_id(served: Served) -> None:
    answer = call(served.port, "POST", "/api/jobs", body=b"{}")
    assert answer.status == 201, answer
    job = json.loads(answer.body)
    record = served.wait_log_record(
        lambda r: r.get("job_id") == job["jobId"] and "folder" in r["message"]
    )
    assert record["logger"] == "aura.engine.run.job_run" and record["level"] == "WARNING"
    assert record["correlation_id"] == job["correlationId"], record
    # its routes' access records name it too
    created = access_of(served, answer.headers["x-correlation-id"])
    assert created["status"] == 201 and "job_id" not in created  # POST /api/jobs has no {id}
    shown = call(served.port, "GET", f"/api/jobs/{job['jobId']}")
    assert access_of(served, shown.headers["x-correlation-id"])["job_id"] == job["jobId"]


def test_a_stream_is_logged_when_its_client_goes_away(served: Served) -> None:
    with connect(served.port) as sock:
        sock.sendall(
            f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}"
            "\r\n\r\n".encode()
        )
        head = read_head(sock)
        assert head.status == 200
        correlation = head.headers["x-correlation-id"]
        time.sleep(0.2)
        assert not any(r.get("correlation_id") == correlation for r in served.log_records())
    record = access_of(served, correlation)  # once it ended
    assert (record["path"], record["status"]) == ("/api/events", 200)
    assert record["duration_ms"] >= 200 and record["bytes"] > 0


def _last_record(path: Path) -> object:
    """The last JSON record of `path`; None while it is missing or empty (a rotation)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    return json.loads(lines[-1]) if lines else None


def test_no_token_or_key_is_ever_logged_and_the_file_rotates(served: Served) -> None:
    # the token and the key where a client might put them: the path, the query, a header
    answer = call(served.port, "GET", f"/api/jobs/{TOKEN}?token={TOKEN}&key={KEY}", f"X-K: {KEY}")
    assert answer.status == 404
    record = access_of(served, answer.headers["x-correlation-id"])
    assert record["path"] == f"/api/jobs/{REDACTED}" and record["job_id"] == REDACTED
    answer = call(
        served.port, "GET", f"/api/jobs/{KEY}", f"Authorization: Bearer {KEY}", token=False
    )
    assert answer.status == 401
    assert access_of(served, answer.headers["x-correlation-id"])["path"] == f"/api/jobs/{REDACTED}"
    for _ in range(10):  # enough lines to rotate the file a few times
        call(served.port, "GET", "/api/health")
    last = access_of(served, call(served.port, "GET", "/api/health").headers["x-correlation-id"])
    logs = served.log.parent / "data" / "logs"
    stderr = served.log.read_text()
    newest = logs / "aura.log"  # written just after stderr, and renamed when it rotates: wait
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while _last_record(newest) != last:
        assert time.monotonic() < deadline, sorted(logs.iterdir())
        time.sleep(0.02)
    files = sorted(p.name for p in logs.iterdir())
    assert files == ["aura.log", *(f"aura.log.{n}" for n in range(1, FILE_COUNT + 1))]
    written = served.log_records()
    for path in logs.iterdir():
        text = path.read_text()
        assert 0 < len(text.encode()) <= FILE_BYTES, path
        assert all(json.loads(line) in written for line in text.splitlines()), path
        assert TOKEN not in text and KEY not in text
    assert TOKEN not in stderr and KEY not in stderr


def test_a_log_file_outside_the_data_folder_or_one_of_its_own_files_is_refused(
    tmp_path: Path,
) -> None:
    for name in ("../outside.log", "aura.db"):
        argv = [*AURA, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0"]
        done = subprocess.run(
            [*argv, "--log-file", name], capture_output=True, text=True, env=clean_env(), timeout=60
        )
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done
        assert done.stderr.startswith("aura serve: InvalidInput:AURA_LOG_FILE: the log file")
    assert not (tmp_path / "outside.log").exists() and not (tmp_path / "data" / "aura.db").exists()


def test_a_log_level_or_format_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    argv = [*AURA, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0"]
    for variable, value in (("AURA_LOG_LEVEL", "verbose"), ("AURA_LOG_FORMAT", "xml")):
        env = clean_env(**{variable: value})
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 2, done  # a usage error, before anything is opened
        assert f"{value!r} (from " in done.stderr and variable in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_the_text_format_when_forced(tmp_path: Path) -> None:
    with aura_serve(tmp_path / "data", "--log-format", "text") as server:
        answer = call(server.port, "GET", "/api/health", token=False)
        correlation = answer.headers["x-correlation-id"]
        line = server.wait_log_record(lambda r: correlation in r.get("line", ""))["line"]
    pattern = (
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO aura\.access: GET /api/health 200 \d+ B "
        rf"[\d.]+ ms from 127\.0\.0\.1 \(correlation id {correlation}\)"
    )
    assert re.fullmatch(pattern, line), line
