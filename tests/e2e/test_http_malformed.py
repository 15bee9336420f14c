"""Requests aiohttp's parser refuses, sent over raw sockets to a real `aura serve`: each is answered
as problem+json with an Aura code and logged in one line, never a traceback; a body too large is
refused while it is still being sent, and a malformed one is answered, not waited on."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aura.engine.errors.taxonomy import TAXONOMY
from aura.http.keys import MAX_BODY_BYTES
from aura.tests.e2e.raw_http import (
    Answer,
    Served,
    aura_serve,
    closed_by_peer,
    connect,
    exchange,
    health,
    read_answer,
    read_head,
)

HOST = b"Host: 127.0.0.1\r\n"
POST_CHUNKED = (
    b"POST /api/jobs HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
#: what aiohttp refuses before any route sees it: (request, status, code, what the detail says)
MALFORMED = {
    "a header over 8,190 bytes": (
        b"GET /api/health HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
        431,
        "HeadersTooLarge",
        "longer than 8,190 bytes",
    ),
    "a URL over 8,190 bytes": (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
        431,
        "HeadersTooLarge",
        "longer than 8,190 bytes",
    ),
    "more than 128 headers": (
        b"GET /api/health HTTP/1.1\r\n"
        + HOST
        + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
        + b"\r\n",
        431,
        "HeadersTooLarge",
        "more than 128 headers",
    ),
    "a NUL in a header": (
        b"GET /api/health HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
        400,
        "BadRequest",
        "Invalid header value char",
    ),
    "a bad method": (b"G@T /api/health HTTP/1.1\r\n" + HOST + b"\r\n", 400, "BadRequest", "method"),
    "TLS on the plain port": (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        400,
        "BadRequest",
        "HTTPS",
    ),
    "a bad chunk size": (POST_CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n", 400, "BadRequest", "chunk size"),
    "an overflowing chunk size": (
        POST_CHUNKED + b"f" * 20 + b"\r\nabc\r\n0\r\n\r\n",
        400,
        "BadRequest",
        "Chunk size overflow",
    ),
    "Content-Length with Transfer-Encoding": (
        b"POST /api/jobs HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
        "BadRequest",
        "Transfer-Encoding",
    ),
    "a duplicate Host": (
        b"GET /api/health HTTP/1.1\r\n" + HOST + b"Host: evil.example\r\n\r\n",
        400,
        "BadRequest",
        "Duplicate 'Host'",
    ),
    "a non-ASCII query": (
        "GET /api/jobs?status=é HTTP/1.1\r\n".encode() + HOST + b"\r\n",
        400,
        "BadRequest",
        "url query",
    ),
    "an unknown HTTP version": (
        b"GET / HTTP/9.9\r\n" + HOST + b"\r\n",
        400,
        "BadRequest",
        "version",
    ),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with aura_serve(tmp_path_factory.mktemp("malformed") / "data") as server:
        yield server


def assert_problem(answer: Answer, status: int, code: str) -> dict[str, Any]:
    """`answer` is the taxonomy's problem for `code`, its remediation included."""
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/problem+json", answer
    problem: dict[str, Any] = json.loads(answer.body)
    assert problem["status"] == status and problem["code"] == code, problem
    assert problem["type"] == f"/api/errors#{code}"
    assert problem["title"] == TAXONOMY[code].title
    assert problem["remediation"] == TAXONOMY[code].remediation
    assert answer.headers["x-correlation-id"] == problem["correlationId"]
    return problem


def new_log_lines(served: Served, before: int) -> list[str]:
    """The lines the server logged after the first `before` (one expected, then a pause for
    any more)."""
    served.wait_log_lines(before + 1)
    time.sleep(0.2)
    return served.log_lines()[before:]


def refusal_line(problem: dict[str, Any]) -> str:
    """The one line the server logs for a refused request."""
    return (
        f"{problem['status']} {problem['code']} from 127.0.0.1: {problem['detail']} "
        f"(correlation id {problem['correlationId']})"
    )


@pytest.mark.parametrize(
    ("request_bytes", "status", "code", "names"), MALFORMED.values(), ids=MALFORMED
)
def test_a_request_the_parser_refuses_is_a_problem_logged_in_one_line(
    served: Served, request_bytes: bytes, status: int, code: str, names: str
) -> None:
    before = len(served.log_lines())
    with connect(served.port) as sock:
        sock.sendall(request_bytes)
        problem = assert_problem(read_answer(sock), status, code)
        assert closed_by_peer(sock, 5.0)  # what follows a fault cannot be parsed
    assert names in problem["detail"], problem
    assert new_log_lines(served, before) == [refusal_line(problem)]  # no traceback


def test_the_answer_and_the_log_line_never_quote_the_request(served: Served) -> None:
    secret = b"Bearer sk-SECRET0123456789"
    cases = [  # aiohttp's own answers quoted each of these lines, the token included
        b"GET /api/health HTTP/1.1\r\n" + HOST + b"Authorization: " + secret + b"\x01\r\n\r\n",
        b"GET /api/health HTTP/1.1\r\n"
        + HOST
        + b"Authorization: "
        + secret
        + b"x" * 9000
        + b"\r\n\r\n",
        b"GET /api/health?k=" + secret.replace(b" ", b"") + b"\xff HTTP/1.1\r\n" + HOST + b"\r\n",
    ]
    before = len(served.log_lines())
    for request in cases:
        answer = exchange(served.port, request)
        assert answer.status in (400, 431) and b"SECRET" not in answer.body, answer
    lines = served.wait_log_lines(before + len(cases))[before:]
    assert len(lines) == len(cases) and not any("SECRET" in line for line in lines), lines


def test_a_malformed_chunk_sent_after_the_head_is_answered_not_waited_on(served: Served) -> None:
    before = len(served.log_lines())
    with connect(served.port) as sock:
        sock.sendall(POST_CHUNKED + b'4\r\n{"a"\r\n')  # the handler is reading the body now
        assert not select.select([sock], [], [], 0.3)[0]  # nothing to answer yet
        sock.sendall(b"zz\r\n")  # aiohttp's parser fails; its handler waited for ever
        problem = assert_problem(read_answer(sock), 400, "BadRequest")
        assert closed_by_peer(sock, 5.0)
    assert "chunk size" in problem["detail"]
    assert new_log_lines(served, before) == [refusal_line(problem)]


def test_a_body_that_is_not_the_gzip_it_claims_is_a_bad_request(served: Served) -> None:
    before = len(served.log_lines())
    answer = exchange(
        served.port,
        b"POST /api/jobs HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nContent-Length: 10\r\n\r\n0123456789",
    )
    problem = assert_problem(answer, 400, "BadRequest")
    assert new_log_lines(served, before) == [refusal_line(problem)]  # was 500, and 2 tracebacks


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    [line] = [row for row in status.splitlines() if row.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


def stream_until_answered(sock: socket.socket, chunk: bytes, most: int) -> tuple[bytes, int]:
    """Send `chunk` after `chunk` (at most `most` bytes) while reading what comes back; stops
    once the server has answered and `most` bytes are sent or it stops reading. Returns what
    came back and the bytes sent."""
    sock.setblocking(False)
    got, sent, deadline = b"", 0, time.monotonic() + 20
    while time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock] if sent < most else [], [], 0.5)
        if readable:
            data = sock.recv(65536)
            if not data:
                break
            got += data
        if writable:
            sent += sock.send(chunk)
        elif not readable and b"\r\n\r\n" in got:
            break  # answered, and the server reads no more
        if sent >= most and b"\r\n\r\n" in got:
            break
    sock.setblocking(True)
    return got, sent


def test_a_streamed_body_over_the_limit_is_refused_before_it_ends_and_never_held(
    served: Served,
) -> None:
    rss_before = rss_bytes(served.proc.pid)
    piece = 64 * 1024
    chunk = b"%x\r\n" % piece + b" " * piece + b"\r\n"
    with connect(served.port) as sock:
        sock.sendall(POST_CHUNKED)
        got, sent = stream_until_answered(sock, chunk, most=64 * 1024 * 1024)  # no last chunk
    assert got.startswith(b"HTTP/1.1 413 "), got[:300]
    assert b'"code":"PayloadTooLarge"' in got and b"application/problem+json" in got
    assert sent > 16 * MAX_BODY_BYTES  # the body went on after the answer, and was dropped:
    assert rss_bytes(served.proc.pid) - rss_before < 16 * 1024 * 1024, "the body was held"
    # a body that announces its size is refused the same way, long before its end
    with connect(served.port) as sock:
        sock.sendall(
            b"POST /api/jobs HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
            b"Content-Length: 10737418240\r\n\r\n"
        )
        got, _ = stream_until_answered(sock, b" " * piece, most=4 * MAX_BODY_BYTES)
    assert got.startswith(b"HTTP/1.1 413 ") and b'"code":"PayloadTooLarge"' in got, got[:300]
    assert health(served.port) < 2.0


def test_a_head_of_an_event_stream_is_refused_and_the_connection_serves_on(served: Served) -> None:
    """A HEAD of a stream got the stream's events after its head (they go straight to the
    socket), and one of a live stream never ended: the connection's next request waited for
    ever. A stream answers GET only."""
    with connect(served.port) as sock:
        for path in (b"/api/events", b"/api/jobs/no-such-job/events"):
            sock.sendall(b"HEAD " + path + b" HTTP/1.1\r\n" + HOST + b"\r\n")
            answer = read_head(sock)
            assert answer.status == 405 and answer.headers["allow"] == "GET", answer
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.body == b""  # the answer to a HEAD has no content
            sock.sendall(b"GET /api/health HTTP/1.1\r\n" + HOST + b"\r\n")
            assert read_answer(sock).status == 200
