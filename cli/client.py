"""`aura submit|watch|retry|rerun|cancel`: clients of a running server (`aura serve`).

`--url` (default http://127.0.0.1:8765, or $AURA_URL) names the server; AURA_TOKEN, when set, is
sent as a bearer token (aura.cli.api). `watch` draws one progress bar per step from the job's
SSE stream (aura.cli.watch). A server that is not running is a one-line error naming the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from yarl import URL

from aura.cli.api import Api, ApiError, open_session
from aura.cli.watch import watch

__all__ = ["DEFAULT_URL", "add_arguments", "job_id_arg", "request_body", "run", "server_url"]

DEFAULT_URL = "http://127.0.0.1:8765"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


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
    async with open_session() as session:
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
