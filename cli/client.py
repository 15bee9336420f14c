"""`aura submit|watch|retry|rerun|cancel`: clients of a running server (`aura serve`).

`--url` (default http://127.0.0.1:8765, or $AURA_URL) names the server; AURA_TOKEN, when set, is
sent as a bearer token. `watch` draws one progress bar per step from the job's SSE stream and,
when the connection drops, reconnects by itself with the last event id it saw, so it misses
and repeats nothing. A server that is not running is a one-line error naming the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from yarl import URL

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "Progress",
    "add_arguments",
    "iter_sse",
    "run",
    "server_url",
    "watch",
]

DEFAULT_URL = "http://127.0.0.1:8765"
#: a stream silent this long (the server pings every 15 s) is treated as dropped
READ_TIMEOUT = 45.0
#: reconnect delays after a dropped stream, doubling up to the last; give up after RECONNECT_FOR
BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0)
RECONNECT_FOR = 120.0
_TERMINAL = {"Succeeded", "Failed", "Canceled"}
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: the members of a job answer the CLI reads
_JOB_KEYS = ("jobId", "status", "attempt", "steps")
_BAR = 24


class ApiError(Exception):
    """A problem+json answer (or the server being unreachable), as one printable message."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def server_url(text: str) -> str:
    """`--url`: an http(s) URL naming a host (and maybe a port), without a trailing slash."""
    try:
        url = URL(text.strip())  # raises for a port out of range, among others
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL: {e}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a server URL: use http://HOST:PORT, e.g. {DEFAULT_URL}"
        )
    return str(url).rstrip("/")


def job_id_arg(text: str) -> str:
    """JOB_ID: the id the server gave (32 hex digits today); it goes into URL paths, so
    nothing that could leave them (`/`, `?`, `..`) is taken."""
    if not _JOB_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text[:80]!r} is not a job id (letters, digits, '-' and '_'; `aura submit` "
            "prints one)"
        )
    return text


def _idempotency_key(text: str) -> str:
    """--idempotency-key: sent as a header, so printable ASCII, at most 200 characters (the
    server's limit)."""
    if not text or len(text) > 200 or not all(" " <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not usable: 1 to 200 printable ASCII characters"
        )
    return text


def add_arguments(parser: argparse.ArgumentParser, command_name: str) -> None:
    parser.add_argument(
        "--url",
        type=server_url,
        default=os.environ.get("AURA_URL", DEFAULT_URL),  # argparse applies `type`
        help=f"the server (default: $AURA_URL or {DEFAULT_URL})",
    )
    if command_name == "submit":
        _submit_arguments(parser)
        return
    parser.add_argument("job_id", metavar="JOB_ID", type=job_id_arg)
    if command_name in ("retry", "rerun"):
        parser.add_argument("--watch", action="store_true", help="follow the job afterwards")


def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=("sample-hello-youtube", "default"))
    parser.add_argument("--brief", type=Path, help="a JSON file with the brief")
    parser.add_argument("--title", help="the brief's title")
    parser.add_argument(
        "--line", action="append", dest="lines", metavar="TEXT", help="a script line (repeat)"
    )
    parser.add_argument("--aspect", choices=("16:9", "9:16"))
    parser.add_argument("--voice", help="an espeak-ng voice (e.g. en-us)")
    parser.add_argument("--quality", choices=("draft", "balanced", "high"))
    parser.add_argument("--encoder", choices=("auto", "x264", "nvenc"))
    parser.add_argument("--subtitles", choices=("burned", "soft", "both"))
    parser.add_argument(
        "--timeout",
        action="append",
        default=[],
        metavar="STEP=SECONDS",
        help="a step's time limit (repeat)",
    )
    parser.add_argument(
        "--idempotency-key",
        type=_idempotency_key,
        help="the same key and body return the same job",
    )
    parser.add_argument("--watch", action="store_true", help="follow the job until it ends")


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /api/jobs body from the flags (the server validates it)."""
    brief = _brief_file(args.brief) if args.brief is not None else {}
    for flag, name in (("title", "title"), ("lines", "script"), ("aspect", "aspect")):
        if getattr(args, flag) is not None:
            brief[name] = getattr(args, flag)
    if args.voice is not None:
        brief["voice"] = args.voice
    options: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("quality", "encoder", "subtitles")
        if getattr(args, name) is not None
    }
    if args.timeout:
        options["timeouts"] = dict(_timeout(t) for t in args.timeout)
    preset = args.preset or ("default" if brief else "sample-hello-youtube")
    body: dict[str, Any] = {"preset": preset, "options": options}
    if brief:
        body["brief"] = brief
    return body


def _brief_file(path: Path) -> dict[str, Any]:
    """The brief in a JSON file: an object, else a usage error naming the file."""
    try:
        brief = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ApiError(f"--brief {path}: cannot read a JSON brief: {e}", 2) from None
    if not isinstance(brief, dict):
        raise ApiError(f"--brief {path}: the brief must be a JSON object", 2)
    return brief


def _timeout(text: str) -> tuple[str, float]:
    step, _, seconds = text.partition("=")
    try:
        return step, float(seconds)
    except ValueError:
        raise ApiError(f"--timeout {text!r}: expected STEP=SECONDS", 2) from None


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except ApiError as e:
        print(f"aura {args.command}: {e}", file=sys.stderr)
        return e.exit_code


async def _run(args: argparse.Namespace) -> int:
    token = os.environ.get("AURA_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        api = Api(session, args.url.rstrip("/"))
        if args.command == "watch":
            return await watch(api, args.job_id, sys.stdout)
        if args.command == "submit":
            extra = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
            job = await api.job("POST", "/api/jobs", json=request_body(args), headers=extra)
        else:
            job = await api.job("POST", f"/api/jobs/{args.job_id}/{args.command}")
        print(job["jobId"] if args.command in ("submit", "rerun") else _summary(job), flush=True)
        if getattr(args, "watch", False):
            return await watch(api, job["jobId"], sys.stdout)
    return 0


def _summary(job: dict[str, Any]) -> str:
    return f"{job['jobId']} {job['status']} (attempt {job['attempt']})"


class Api:
    """JSON calls to the server, turning problems and refused connections into ApiError."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def job(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call answered with a job (create, get, cancel, retry, rerun)."""
        job = await self.call(method, path, **kwargs)
        if not isinstance(job, dict) or any(key not in job for key in _JOB_KEYS):
            raise self.not_aura()
        return job

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(method, self.url + path, **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise ApiError(_problem_text(resp.status, body, self.url))
        except aiohttp.ClientConnectionError as e:
            raise self.unreachable(e) from None
        try:
            return json.loads(body) if body else None
        except ValueError:  # not JSON (UnicodeDecodeError included)
            raise self.not_aura() from None

    def not_aura(self) -> ApiError:
        return ApiError(f"{self.url} answered, but not as an Aura server does: check --url", 2)

    def unreachable(self, error: BaseException) -> ApiError:
        return ApiError(
            f"no Aura server at {self.url} ({type(error).__name__}); start one with `aura serve`", 2
        )


def _problem_text(status: int, body: bytes, url: str) -> str:
    try:
        problem = json.loads(body)
        return f"{problem['code']}: {problem['detail']} ({problem['remediation']})"
    except (ValueError, KeyError, TypeError):  # not a problem: one line of what it said
        said = " ".join(body[:200].decode(errors="replace").split())[:100]
        return f"HTTP {status} from {url}, not an Aura problem answer: {said!r}"


# ---- the live view -----------------------------------------------------------------------


async def iter_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
    """(id, event, data) of each message of a text/event-stream response, until it ends."""
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields and "id" in fields:
            yield int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"])
        fields = {}


class Progress:
    """One bar per step, redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, job: dict[str, Any], out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.status = job["status"]
        self.steps = {
            s["name"]: [s["status"], s["progressPct"], s["etaSeconds"]] for s in job["steps"]
        }
        self.drawn = 0
        self.notes: list[str] = []
        #: the id of the last event applied: where a reconnect resumes
        self.last: int | None = None
        #: a retried job's stream replays its earlier attempts first: those are not shown
        self.attempt = job["attempt"]
        self.caught_up = False

    def apply(self, event: str, data: dict[str, Any]) -> None:
        if not self.caught_up:
            if data.get("attempt", 0) < self.attempt:  # progress carries none: skipped too
                return None
            self.caught_up = True
        step = self.steps.get(data.get("step") or "")
        if event == "step-progress" and step is not None:
            step[1], step[2] = data["progressPct"], data["etaSeconds"]
            if self.tty:
                return self.draw()
            return None
        if event in ("step-status", "step-error") and step is not None:
            step[0] = data["status"]
            step[1] = 100.0 if data["status"] in ("Succeeded", "Skipped") else step[1]
            step[2] = None
        if event.startswith("job-") and "status" in data:
            self.status = data["status"]
        noted = event in ("step-error", "job-failed", "job-warning")
        if noted:
            self.notes.append(_note(event, data))
        if self.tty:
            return self.draw()
        # one line per change: the step's status for a step's event, else the job's
        shown = step[0] if step is not None and event.startswith("step-") else self.status
        label = data["type"] + (f" {data['step']}" if data.get("step") else "")
        print(f"{label}: {shown}", file=self.out, flush=True)
        if noted:
            print(f"  {self.notes[-1]}", file=self.out, flush=True)
        return None

    def draw(self) -> None:
        """Redraw the bars and notes in place (on a terminal; nothing otherwise)."""
        if not self.tty:
            return
        lines = [f"job {self.status}"] + [_bar(name, *s) for name, s in self.steps.items()]
        lines += self.notes
        # one row each: a line that wrapped would make the next redraw go up too few rows
        width = _columns(self.out)
        lines = [line if len(line) < width else line[: width - 4] + "..." for line in lines]
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)


def _columns(out: TextIO) -> int:
    try:
        return max(os.get_terminal_size(out.fileno()).columns, 20)
    except (OSError, ValueError):  # not a terminal after all: a common width
        return 80


def _bar(name: str, status: str, pct: float, eta: float | None) -> str:
    filled = int(_BAR * min(max(pct, 0.0), 100.0) / 100)
    eta_text = f" eta {eta:.0f}s" if eta is not None and status == "Running" else ""
    return f"{name:<10} [{'#' * filled}{'.' * (_BAR - filled)}] {pct:5.1f}% {status}{eta_text}"


def _note(event: str, data: dict[str, Any]) -> str:
    if event == "job-warning":
        return f"warning {data['code']}: {data['message']}"
    error = data["error"]
    return f"error {error['code']}: {error['message']} -> {error['remediation']}"


async def watch(api: Api, job_id: str, out: TextIO) -> int:
    """Follow the job until its stream ends; exit 0 if it succeeded, 1 otherwise."""
    progress = Progress(await api.job("GET", f"/api/jobs/{job_id}"), out)
    progress.draw()
    failures = 0
    deadline: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            if await _follow_once(api, job_id, progress):
                break
            failures, deadline = 0, None
        except (aiohttp.ClientError, TimeoutError) as e:
            # Dropped: reconnect after the last id applied (kept even when the drop raised).
            deadline = deadline or loop.time() + RECONNECT_FOR
            if loop.time() > deadline:
                if isinstance(e, aiohttp.ClientResponseError) and e.status == 503:
                    raise ApiError(f"{api.url} stayed busy (ServerBusy); try again later") from None
                raise api.unreachable(e) from None
            await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
            failures += 1
    return _outcome(await api.job("GET", f"/api/jobs/{job_id}"), out)


async def _follow_once(api: Api, job_id: str, progress: Progress) -> bool:
    """One connection, from `progress.last`; True when the stream is over for good (204)."""
    last = progress.last
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    url = f"{api.url}/api/jobs/{job_id}/events"
    async with api.session.get(url, headers=headers) as resp:
        if resp.status == 204:
            return True
        if resp.status == 503:  # ServerBusy (as many streams as it allows): try again later
            raise aiohttp.ClientResponseError(
                resp.request_info, resp.history, status=503, message="the server is busy"
            )
        if resp.status >= 400:
            raise ApiError(_problem_text(resp.status, await resp.read(), api.url))
        async for seq, event, data in iter_sse(resp):
            progress.apply(event, data)
            progress.last = seq
    return False


def _outcome(job: dict[str, Any], out: TextIO) -> int:
    if job["status"] == "Succeeded":
        output = job["output"]
        print(
            f"done: {output['videoPath']} ({output['sizeBytes']} bytes, "
            f"{output['durationSeconds']:.1f} s)",
            file=out,
            flush=True,
        )
        return 0
    for error in job["errors"][-1:]:
        print(
            f"{job['status']}: {error['code']}: {error['message']}\n  {error['remediation']}",
            file=out,
            flush=True,
        )
    if not job["errors"]:
        print(job["status"], file=out, flush=True)
    return 1
