"""`aura serve`'s connection limits, on a real process over raw sockets: a request's head must
arrive within AURA_HEAD_TIMEOUT (a slow or silent client is closed while others are served, a
kept-alive or streaming connection is not), and the listen backlog is AURA_BACKLOG/--backlog."""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aura.cli.serve import backlog_cap
from aura.engine.errors.taxonomy import TAXONOMY
from aura.http.protocol import DEFAULT_BACKLOG
from aura.tests.e2e.raw_http import (
    AURA,
    Served,
    aura_serve,
    clean_env,
    closed_by_peer,
    connect,
    health,
    read_answer,
    read_head,
)

#: the head timeout the tests' server runs with (seconds)
BOUND = 2.0
GET_HEALTH = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("limits") / "data"
    with aura_serve(data, AURA_HEAD_TIMEOUT=f"{BOUND:g}") as server:
        yield server


def test_a_client_sending_its_head_a_byte_a_second_is_closed_while_others_are_served(
    served: Served,
) -> None:
    before = len(served.log_lines())
    others: list[float] = []
    with connect(served.port) as slow:
        started = time.monotonic()
        for byte in GET_HEALTH:  # 46 bytes: 46 seconds, were it not closed
            slow.sendall(bytes([byte]))
            others.append(health(served.port))  # another client, served at once meanwhile
            if select.select([slow], [], [], 1.0)[0]:
                break
        elapsed = time.monotonic() - started
        answer = read_answer(slow)
        assert closed_by_peer(slow, 5.0)
    assert BOUND <= elapsed < BOUND + 1.5, elapsed
    assert answer.status == 408 and answer.headers["content-type"] == "application/problem+json"
    problem = json.loads(answer.body)
    assert problem["code"] == "RequestTimeout" and problem["status"] == 408
    assert problem["remediation"] == TAXONOMY["RequestTimeout"].remediation
    assert len(others) >= 2 and max(others) < 1.0, others
    lines = served.wait_log_lines(before + 1)[before:]
    assert lines == [
        f"408 RequestTimeout from 127.0.0.1: {problem['detail']} "
        f"(correlation id {problem['correlationId']})"
    ]


def test_hundreds_of_silent_connections_are_closed_after_the_bound_without_an_answer(
    served: Served,
) -> None:
    before = len(served.log_lines())
    silent = [connect(served.port) for _ in range(300)]
    try:
        started = time.monotonic()
        assert health(served.port) < 1.0
        for sock in silent:
            assert closed_by_peer(sock, BOUND + 3.0)
            sock.settimeout(1.0)
        assert time.monotonic() - started < BOUND + 3.0
        assert all(sock.recv(1) == b"" for sock in silent)  # no answer: nothing was asked
    finally:
        for sock in silent:
            sock.close()
    assert served.log_lines()[before:] == []  # a silent connection is no error


def test_a_kept_alive_connection_idle_longer_than_the_bound_stays_open(served: Served) -> None:
    with connect(served.port) as sock:
        sock.sendall(GET_HEALTH)
        assert read_answer(sock).status == 200
        assert not closed_by_peer(sock, BOUND + 1.0)  # idle between requests: keep-alive's
        sock.sendall(GET_HEALTH)
        assert read_answer(sock).status == 200


def test_a_further_request_begun_and_stalled_on_a_kept_alive_connection_is_closed(
    served: Served,
) -> None:
    with connect(served.port) as sock:
        sock.sendall(GET_HEALTH)
        assert read_answer(sock).status == 200
        time.sleep(0.5)
        started = time.monotonic()
        sock.sendall(GET_HEALTH[:10])
        answer = read_answer(sock)
        assert BOUND - 0.1 <= time.monotonic() - started < BOUND + 1.5
        assert answer.status == 408
        assert closed_by_peer(sock, 5.0)


def test_a_stream_longer_than_the_bound_is_not_cut(served: Served) -> None:
    with connect(served.port) as sock:
        sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_head(sock)
        assert answer.status == 200 and answer.headers["content-type"].startswith(
            "text/event-stream"
        )
        assert not closed_by_peer(sock, BOUND + 1.5)
    # pipelined requests are each answered (their heads came together, at once)
    with connect(served.port) as sock:
        sock.sendall(GET_HEALTH * 3)
        assert [read_answer(sock).status for _ in range(3)] == [200, 200, 200]


def queued_connections(port: int, most: int) -> int:
    """How many connections the kernel completes for a server that accepts none: its backlog
    plus one on Linux. The one past that waits for a SYN retry (a second), so the count ends
    at the first connect that does not complete at once."""
    opened: list[socket.socket] = []
    try:
        while len(opened) < most:
            sock = socket.socket()
            sock.settimeout(0.3)
            try:
                sock.connect(("127.0.0.1", port))
            except TimeoutError:
                sock.close()
                break
            opened.append(sock)
        return len(opened)
    finally:
        for sock in opened:
            sock.close()


def backlog_of(served: Served, most: int) -> int:
    """The backlog of the server's listening socket, measured with the server stopped."""
    os.kill(served.proc.pid, signal.SIGSTOP)
    try:
        return queued_connections(served.port, most) - 1
    finally:
        os.kill(served.proc.pid, signal.SIGCONT)


@pytest.fixture
def open_files() -> Iterator[None]:
    """Room for the thousands of sockets the backlog tests open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = DEFAULT_BACKLOG + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard limit of open files is {hard}, under {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(backlog_cap() is None, reason="Linux only: needs net.core.somaxconn")
def test_the_listen_backlog_is_the_setting_capped_by_the_kernel(
    tmp_path: Path, open_files: None
) -> None:
    cap = backlog_cap()
    assert cap is not None
    with aura_serve(tmp_path / "a", "--backlog", "300") as server:
        assert backlog_of(server, 10_000) == min(300, cap)
        assert health(server.port) < 2.0  # the queued connections were let go
    with aura_serve(tmp_path / "b", AURA_BACKLOG="200") as server:
        assert backlog_of(server, 10_000) == min(200, cap)
    with aura_serve(tmp_path / "c") as server:  # the default: aiohttp's 128 was far too few
        assert backlog_of(server, 10_000) == min(DEFAULT_BACKLOG, cap) > 128
    with aura_serve(tmp_path / "d", "--backlog", str(cap + 1)) as server:
        assert backlog_of(server, 10_000) == cap
        note = f"the kernel caps the backlog at {cap} (net.core.somaxconn)"
        assert served_log_has(server, note)


def served_log_has(server: Served, text: str) -> bool:
    return any(line.startswith(text) for line in server.log_lines())


@pytest.mark.parametrize(
    ("args", "var", "value"),
    [
        ((), "AURA_BACKLOG", "lots"),
        ((), "AURA_BACKLOG", "0"),
        ((), "AURA_HEAD_TIMEOUT", "0"),
        ((), "AURA_HEAD_TIMEOUT", "nan"),
        (("--head-timeout", "-1"), "", ""),
        (("--backlog", "1.5"), "", ""),
    ],
)
def test_a_malformed_listening_setting_is_a_one_line_usage_error(
    tmp_path: Path, args: tuple[str, ...], var: str, value: str
) -> None:
    env = clean_env(**({var: value} if var else {}))
    result = subprocess.run(
        [*AURA, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    named = var or args[0]
    assert named in last and (value or args[1]) in last, result.stderr
    assert not (tmp_path / "data").exists()
