"""A real `aura serve` process whose stderr (its log, one JSON object a line) goes to a file, and
HTTP/1.1 spoken over raw sockets: what no HTTP client library will send (malformed heads, slow
heads, endless bodies)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
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

    def log_records(self) -> list[dict[str, Any]]:
        """The server's log so far: each whole line of its stderr decoded as a JSON record; a
        line that is not one (written past the logging) as `{"line": LINE}`."""
        return log_records(self.log)

    def log_lines(self) -> list[str]:
        """What the server logged so far, its access log left out: each record's message, or a
        line that is not a record whole."""
        return [r.get("message", r.get("line", "")) for r in self.log_records() if not _access(r)]

    def wait_log_record(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float = ANSWER_TIMEOUT
    ) -> dict[str, Any]:
        """The first record of `log_records()` that `matches`, once there is one (or an
        AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.log_records() if matches(r)]
            if found or time.monotonic() > deadline:
                assert found, f"no such record in {self.log.read_text()}"
                return found[0]
            time.sleep(0.02)

    def wait_log_lines(self, count: int, timeout: float = ANSWER_TIMEOUT) -> list[str]:
        """`log_lines()` once there are at least `count` (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while len(lines := self.log_lines()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return lines


def start_serve(data_dir: Path, port: int, args: tuple[str, ...], env: dict[str, str]) -> Served:
    """`aura serve --port PORT ARGS` (0: a free port) with AURA_* `env`, once it says it
    listens; its stderr is appended to the data folder's log file."""
    log = data_dir.parent / f"{data_dir.name}-stderr.log"
    argv = [*AURA, "serve", "--data-dir", str(data_dir), "--port", str(port), *args]
    starts = _starts_logged(log)
    with log.open("a") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, env=clean_env(**env)
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on http://127.0.0.1:" not in line:
        stop_serve(proc, signal.SIGKILL)
        raise AssertionError((line, log.read_text()))
    # it logs the start just after printing it: a test counting lines then must find it there
    # (a server logging nothing at INFO, AURA_LOG_LEVEL=WARNING, costs ANSWER_TIMEOUT here)
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while _starts_logged(log) == starts and time.monotonic() < deadline:
        time.sleep(0.01)
    return Served(proc, int(line.split("127.0.0.1:", 1)[1].split()[0]), log)


def stop_serve(proc: subprocess.Popen[str], sig: signal.Signals) -> int:
    """Send `sig` (unless it has exited) and wait for the exit; its status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
        proc.send_signal(sig)
    proc.communicate(timeout=30)
    return proc.returncode


def log_records(path: Path) -> list[dict[str, Any]]:
    """Each whole line of the log file `path` (none if there is none), as `Served.log_records`."""
    text = path.read_text() if path.exists() else ""
    records = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):  # still being written
            break
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        records.append(record if isinstance(record, dict) else {"line": line.rstrip("\n")})
    return records


def _access(record: dict[str, Any]) -> bool:
    return record.get("logger") == "aura.access"


def _starts_logged(log: Path) -> int:
    """How many starts the log records: the record each logs once it listens (a JSON record, or
    a line of the text format)."""
    return sum(
        (r.get("logger") == "aura.serve" and r.get("message", "").startswith("listening on "))
        or " aura.serve: listening on " in r.get("line", "")
        for r in log_records(log)
    )


@contextmanager
def aura_serve(data_dir: Path, *args: str, **env: str) -> Iterator[Served]:
    """`aura serve --port 0 ARGS` with AURA_* `env`; stops it with SIGTERM and checks it exited
    cleanly."""
    data_dir.parent.joinpath(f"{data_dir.name}-stderr.log").unlink(missing_ok=True)
    served = start_serve(data_dir, 0, args, env)
    try:
        yield served
    finally:
        assert stop_serve(served.proc, signal.SIGTERM) == 0, served.log.read_text()


class RestartableServe:
    """`aura serve` on one port and data folder that a test stops and starts again: SIGTERM
    (a clean stop, which must exit 0) or SIGKILL (a crash)."""

    def __init__(self, data_dir: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
        self._start = (data_dir, args, env)
        self.served = start_serve(data_dir, 0, args, env)
        self.port = self.served.port

    def restart(self, sig: signal.Signals) -> None:
        status = stop_serve(self.served.proc, sig)
        assert status == (0 if sig == signal.SIGTERM else -sig), (status, self.served.log_lines())
        data_dir, args, env = self._start
        self.served = start_serve(data_dir, self.port, args, env)


@contextmanager
def aura_serve_restartable(data_dir: Path, *args: str, **env: str) -> Iterator[RestartableServe]:
    """As `aura_serve`, restartable on the same port (`restart(signal)`)."""
    data_dir.parent.joinpath(f"{data_dir.name}-stderr.log").unlink(missing_ok=True)
    server = RestartableServe(data_dir, args, env)
    try:
        yield server
    finally:
        status = stop_serve(server.served.proc, signal.SIGTERM)
        assert status == 0, server.served.log.read_text()


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


class ChunkedBody:
    """Decodes a `Transfer-Encoding: chunked` body as its bytes arrive, cut anywhere."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # bytes of the current chunk still to come
        self._crlf = False  # the current chunk's data has come, its CRLF not yet
        #: the last chunk (size 0) has come
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        """The body bytes that `data` brings."""
        self._buffer += data
        body: list[bytes] = []
        while not self.ended:
            if self._left:
                taken = self._buffer[: self._left]
                body.append(taken)
                self._buffer = self._buffer[len(taken) :]
                self._left -= len(taken)
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if len(self._buffer) < 2:
                    break
                assert self._buffer.startswith(b"\r\n"), self._buffer[:40]
                self._buffer = self._buffer[2:]
                self._crlf = False
            size, found, rest = self._buffer.partition(b"\r\n")
            if not found:
                break
            self._buffer = rest
            self._left = int(size.split(b";")[0], 16)
            self.ended = self._left == 0
        return b"".join(body)
