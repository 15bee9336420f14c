"""`aura serve`: run the HTTP server (API, live streams) over the data folder.

Binds 127.0.0.1:8765 by default (`--host`/`--port`, or AURA_HOST/AURA_PORT). Binding any other
address needs AURA_TOKEN, which every request must then carry. `--backlog` (AURA_BACKLOG) is the
listen queue and `--head-timeout` (AURA_HEAD_TIMEOUT) the seconds a client has to send a
request's line and headers (see aura.http.protocol). Prints the URL once listening (the real
port when `--port 0`), and stops cleanly on SIGINT or SIGTERM: open streams end, the runner
stops, and jobs still running are resumed by the next start.

Logs (aura.engine.config.logs) go to stderr, one JSON object a line or text on a terminal
(`--log-format`/AURA_LOG_FORMAT), from `--log-level`/AURA_LOG_LEVEL up, and with
`--log-file`/AURA_LOG_FILE also to a rotating file in the data folder; the access log is the
logger `aura.access` (aura.http.access_log).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from aiohttp import web

from aura.cli.main import add_data_dir, add_database_url
from aura.engine.config.logs import (
    DEFAULT_FILE_BYTES,
    DEFAULT_FILE_COUNT,
    LOG_FORMATS,
    LOG_LEVELS,
    Logs,
    LogSettings,
    configure_logging,
    log_file_in,
)
from aura.engine.config.saved_settings import secret_values
from aura.engine.config.settings import Settings
from aura.engine.errors.taxonomy import AuraError
from aura.http.app import create_app
from aura.http.diagnostics import secrets_of
from aura.http.keys import CONFIG, ENGINE
from aura.http.protocol import DEFAULT_BACKLOG, DEFAULT_HEAD_TIMEOUT, listen
from aura.http.security import is_loopback, weak_token
from aura.http.sse import StreamConfig
from aura.store.errors import StoreError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Listening",
    "add_arguments",
    "add_log_arguments",
    "backlog_cap",
    "run",
    "serve",
    "start_logging",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: seconds open requests get to finish on shutdown
SHUTDOWN_TIMEOUT = 5.0
#: seconds an idle keep-alive connection stays open (aiohttp's default is an hour)
KEEPALIVE_SECONDS = 75.0
#: open files kept for the log, renders and requests other than streams
RESERVED_FILES = 256
#: Linux's cap on any listen backlog
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
_N = TypeVar("_N", int, float)
_log = logging.getLogger("aura.serve")


def add_arguments(parser: argparse.ArgumentParser, command_name: str) -> None:
    add_data_dir(parser)
    add_database_url(parser)
    parser.add_argument(
        "--host",
        default=os.environ.get("AURA_HOST", DEFAULT_HOST),
        help=f"address to bind (default: $AURA_HOST or {DEFAULT_HOST}); "
        "any non-loopback address requires AURA_TOKEN",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("AURA_PORT", str(DEFAULT_PORT)),  # argparse applies `type`
        help=f"port (default: $AURA_PORT or {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--backlog",
        type=_number(int, "--backlog or AURA_BACKLOG", 1, 1 << 20),
        default=os.environ.get("AURA_BACKLOG", str(DEFAULT_BACKLOG)),
        help=f"connections the kernel queues until the server accepts them (default: "
        f"$AURA_BACKLOG or {DEFAULT_BACKLOG}; Linux caps it at net.core.somaxconn)",
    )
    parser.add_argument(
        "--head-timeout",
        type=_number(float, "--head-timeout or AURA_HEAD_TIMEOUT", 0.001, 3600),
        default=os.environ.get("AURA_HEAD_TIMEOUT", f"{DEFAULT_HEAD_TIMEOUT:g}"),
        help=f"seconds a client has to send a request's line and headers (default: "
        f"$AURA_HEAD_TIMEOUT or {DEFAULT_HEAD_TIMEOUT:g})",
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="serve the API and the live streams only, running no job: `aura worker` "
        "processes run them (PostgreSQL only)",
    )
    add_log_arguments(parser)


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    parser.add_argument(
        "--log-format",
        type=_one_of(LOG_FORMATS, "--log-format or AURA_LOG_FORMAT", str.lower),
        default=env.get("AURA_LOG_FORMAT", "auto"),
        help="stderr's log lines: json, text, or auto: text on a terminal, else JSON "
        "(default: $AURA_LOG_FORMAT or auto)",
    )
    parser.add_argument(
        "--log-level",
        type=_one_of(LOG_LEVELS, "--log-level or AURA_LOG_LEVEL", str.upper),
        default=env.get("AURA_LOG_LEVEL", "INFO"),
        help="the least level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL (default: "
        "$AURA_LOG_LEVEL or INFO; the access log is INFO)",
    )
    parser.add_argument(
        "--log-file",
        default=env.get("AURA_LOG_FILE") or None,
        help="also log, as JSON, to this file inside the data folder (a relative name is in "
        "it; default: $AURA_LOG_FILE or none)",
    )
    parser.add_argument(
        "--log-file-bytes",
        type=_number(int, "--log-file-bytes or AURA_LOG_FILE_BYTES", 1024, 1 << 40),
        default=env.get("AURA_LOG_FILE_BYTES", str(DEFAULT_FILE_BYTES)),
        help=f"the log file is rotated before it passes this size (default: "
        f"$AURA_LOG_FILE_BYTES or {DEFAULT_FILE_BYTES})",
    )
    parser.add_argument(
        "--log-file-count",
        type=_number(int, "--log-file-count or AURA_LOG_FILE_COUNT", 1, 1000),
        default=env.get("AURA_LOG_FILE_COUNT", str(DEFAULT_FILE_COUNT)),
        help=f"rotated log files kept besides the current one, the oldest deleted (default: "
        f"$AURA_LOG_FILE_COUNT or {DEFAULT_FILE_COUNT})",
    )


def _port(text: str) -> int:
    """A TCP port number, 0 to 65535 (argparse prints the error, naming --port)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} (from --port or AURA_PORT) is not a port number, 0 to 65535"
        )
    return port


def _one_of(
    names: Sequence[str], source: str, normal: Callable[[str], str]
) -> Callable[[str], str]:
    """An argparse `type`: one of `names` (after `normal`), its error naming `source`. Unlike
    `choices`, it checks a default from the environment too."""

    def parse(text: str) -> str:
        if (value := normal(text)) not in names:
            raise argparse.ArgumentTypeError(
                f"{text!r} (from {source}) is not one of {', '.join(names)}"
            )
        return value

    return parse


def _number(kind: type[_N], source: str, low: _N, high: _N) -> Callable[[str], _N]:
    """An argparse `type`: `kind` from `low` to `high`, its error naming `source`."""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:  # NaN too
            raise argparse.ArgumentTypeError(
                f"{text!r} (from {source}) is not a number from {low} to {high}"
            )
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    token = os.environ.get("AURA_TOKEN") or None
    if not is_loopback(args.host) and token is None:
        print(
            f"aura serve: refusing to bind {args.host} without a token: set AURA_TOKEN "
            "(clients then send it as 'Authorization: Bearer ...'), or bind 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    weakness = token and weak_token(token)
    if weakness:
        print(f"aura serve: AURA_TOKEN is not usable: {weakness}", file=sys.stderr)
        return 2
    logs: Logs | None = None
    try:
        runs_jobs = False if args.no_worker else None
        settings = Settings.from_env(
            data_dir=args.data_dir, database_url=args.database_url, runs_jobs=runs_jobs
        )
        if not settings.runs_jobs and settings.database_url is None:
            print(
                "aura serve: --no-worker needs the log in PostgreSQL (--database-url or "
                "AURA_DATABASE_URL), where `aura worker` processes run the jobs; on the data "
                "folder's SQLite log the server runs them itself",
                file=sys.stderr,
            )
            return 2
        listening = Listening(args.backlog, args.head_timeout)
        logs = start_logging(args, settings)
        asyncio.run(serve(settings, args.host, args.port, token, listening, logs))
    except AuraError as e:  # a malformed AURA_* variable, a data folder that cannot be created
        print(f"aura serve: {e} ({e.info.remediation})", file=sys.stderr)
        return 1
    except StoreError as e:  # the folder is in use, or its log cannot be opened
        print(f"aura serve: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"aura serve: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr
        )
        return 1
    finally:
        if logs is not None:
            logs.close()
    return 0


def start_logging(args: argparse.Namespace, settings: Settings) -> Logs:
    """Configure the process's logging from the --log-* options. Raises AuraError
    (InvalidInput:AURA_LOG_FILE) for a file outside the data folder, one of Aura's own there,
    or one it cannot open."""
    file = None if args.log_file is None else log_file_in(settings, args.log_file)
    log = LogSettings(
        args.log_format, args.log_level, file, args.log_file_bytes, args.log_file_count
    )
    try:
        return configure_logging(log)
    except OSError as e:
        raise AuraError.of(
            "InvalidInput:AURA_LOG_FILE",
            f"cannot open the log file {file}: {e.strerror}",
            remediation="Name a file Aura can create and write inside the data folder, or "
            "unset AURA_LOG_FILE / --log-file.",
            details={"field": "AURA_LOG_FILE"},
        ) from None


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (often 1024 against
    hundreds of thousands): every client connection holds a descriptor, and a server out of
    them stops accepting anyone. Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    # macOS refuses a soft limit above its per-process maximum (often 10,240 or 24,576) even
    # under an infinite hard one: try lower targets until one is taken; the hard limit stays
    for target in (ceiling, 65_536, 24_576, 10_240):
        if soft < target <= ceiling:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                break
            except (ValueError, OSError):
                continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def stream_limit(open_files: int) -> int:
    """How many SSE streams to allow with this many descriptors, keeping RESERVED_FILES for
    the log, renders and other requests."""
    return max(16, min(StreamConfig().max_streams, open_files - RESERVED_FILES))


class Listening(NamedTuple):
    """How `aura serve` listens, besides where."""

    #: connections the kernel queues until the server accepts them
    backlog: int = DEFAULT_BACKLOG
    #: seconds a client has to send a request's line and headers
    head_timeout: float = DEFAULT_HEAD_TIMEOUT


def backlog_cap() -> int | None:
    """The kernel's cap on a listen backlog (Linux: net.core.somaxconn), if it can be read."""
    try:
        return int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return None


async def serve(
    settings: Settings,
    host: str,
    port: int,
    token: str | None,
    listening: Listening | None = None,
    logs: Logs | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; `logs`, if given, redact the app's secrets."""
    listening = listening or Listening()
    cap = backlog_cap()
    if cap is not None and listening.backlog > cap:
        _log.warning(
            "the kernel caps the backlog at %d (net.core.somaxconn), not %d",
            cap,
            listening.backlog,
        )
    streams = StreamConfig(max_streams=stream_limit(raise_open_files_limit()))
    app = create_app(settings, token=token, stream=streams)
    if logs is not None:
        logs.use_secrets(functools.partial(_app_secrets, app))
    # handler_cancellation: a vanished SSE client's handler is canceled at once, freeing its
    # subscription (engine appends are shielded, so a canceled request loses no event).
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    server: asyncio.Server | None = None
    try:
        server = await listen(
            runner,
            host,
            port,
            backlog=listening.backlog,
            head_timeout=listening.head_timeout,
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before saying so: a stop may come at once
            loop.add_signal_handler(sig, stop.set)
        url, where = _url(server, host), _where(settings)
        print(f"Aura is listening on {url}  ({where})", flush=True)
        _log.info("listening on %s (%s)", url, where)
        await stop.wait()
        print("Aura: stopping", flush=True)
        _log.info("stopping")
    finally:
        if server is not None:
            server.close()  # no new connection; the runner then ends those open
        await runner.cleanup()


def _app_secrets(app: web.Application) -> tuple[str, ...]:
    """What the log redacts: the token and the API keys, those saved from the page included
    once the engine is open (aura.http.diagnostics.secrets_of)."""
    config, engine = app[CONFIG], app.get(ENGINE)
    if engine is None:
        settings = config.settings
        return secret_values((config.token, settings.openai_api_key, *settings.database_secrets))
    return secrets_of(config, engine)


def _where(settings: Settings) -> str:
    """Where the data is: the folder, and the log's database (its password left out)."""
    if settings.database_url is None:
        return f"data in {settings.data_dir}"
    return f"data in {settings.data_dir}, log in {settings.database_url_shown}"


def _url(server: asyncio.Server, host: str) -> str:
    port = server.sockets[0].getsockname()[1]  # the real port, when --port 0 asked for one
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
