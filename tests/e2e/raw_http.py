"""A real `aura serve` process whose stderr goes to a file, and HTTP/1.1 spoken over raw sockets:
what no HTTP client library will send (malformed heads, slow heads, endless bodies)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from weakref import WeakKeyDictionary

AURA = [sys.executable, "-m", "aura.cli.main"]
#: seconds a test waits for an answer it expects
ANSWER_TIMEOUT = 10.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    return env | extra


class Served(NamedTuple):
    proc: subprocess.Popen[str]
    port: int
    log: Path

    def log_lines(self) -> list[str]:
        """The server's stderr so far, line by line."""
        return self.log.read_text().splitlines()

    def wait_log_lines(self, count: int, timeout: float = ANSWER_TIMEOUT) -> list[str]:
        """The server's stderr once it has at least `count` lines (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while len(lines := self.log_lines()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return lines


@contextmanager
def aura_serve(data_dir: Path, *args: str, **env: str) -> Iterator[Served]:
    """`aura serve --port 0 ARGS` with AURA_* `env`; stops it with SIGTERM and checks it exited
    cleanly."""
    log = data_dir.parent / f"{data_dir.name}-stderr.log"
    argv = [*AURA, "serve", "--data-dir", str(data_dir), "--port", "0", *args]
    with log.open("w") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, env=clean_env(**env)
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (line, log.read_text())
        yield Served(proc, int(line.split("127.0.0.1:", 1)[1].split()[0]), log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0, log.read_text()


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT)
    sock.settimeout(ANSWER_TIMEOUT)
    return sock


#: bytes read from a socket past the answer asked for: pipelined answers can arrive in one read
_unread: WeakKeyDictionary[socket.socket, bytes] = WeakKeyDictionary()


def read_head(sock: socket.socket) -> Answer:
    """A response's head from `sock`, with what came of its body so far."""
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer (after {data[:200]!r})")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def read_answer(sock: socket.socket) -> Answer:
    """One response from `sock`: its head, then Content-Length bytes of body (or up to EOF)."""
    status, headers, body = read_head(sock)
    length = int(headers.get("content-length", "-1"))
    while len(body) < length or length < 0:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if length < 0:
        return Answer(status, headers, body)
    _unread[sock] = body[length:]
    return Answer(status, headers, body[:length])


def exchange(port: int, request: bytes) -> Answer:
    """Send `request` on a new connection and read the one answer."""
    with connect(port) as sock:
        sock.sendall(request)
        return read_answer(sock)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes `sock` within `timeout` seconds (reading and dropping any
    answer before the end)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def health(port: int) -> float:
    """Seconds `GET /api/health` takes on a new connection (asserting it answers 200)."""
    started = time.monotonic()
    answer = exchange(port, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.status == 200, answer
    return time.monotonic() - started
