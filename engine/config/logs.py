"""The process's own log: what `aura serve` says about itself, one record a line.

To stderr as one JSON object a line: `time` (ISO 8601 UTC with microseconds, as the event log
writes it), `level`, `logger`, `message`, then `job_id` and `correlation_id` where there is one,
the record's own fields (the access log's `status`, `duration_ms`...) and `exc`, the traceback;
or, on a terminal, as one readable line. With a file set, also to a file in the data folder,
always as JSON, rotated by size (`RotatingFileHandler`: a bounded number of bounded files).

The job and correlation ids come from context variables set where a job run or a request is
handled (`bind_job`, `bind_correlation`), which `ContextFilter` copies onto each record. Each
message, traceback and string field goes through the redaction of secrets
(`aura.engine.errors.redaction`): the configured secret values and anything key-like.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import msgspec

from aura.engine.config.saved_settings import SETTINGS_FILE, secret_values
from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import SECRET_ENV_VARS
from aura.engine.errors.redaction import redact_key_like, redact_secrets
from aura.engine.errors.taxonomy import AuraError
from aura.engine.files.folder_lock import LOCK_FILE_NAME
from aura.store.log import DB_FILE_NAME
from aura.store.rows import format_ts

__all__ = [
    "CORRELATION_ID",
    "JOB_ID",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ContextFilter",
    "JsonFormatter",
    "LogSettings",
    "Logs",
    "TextFormatter",
    "bind_correlation",
    "bind_job",
    "configure_logging",
    "environment_secrets",
    "log_file_in",
]

#: the job whose work is being logged (set by the run of a job, in its own task)
JOB_ID: ContextVar[str | None] = ContextVar("aura_log_job_id", default=None)
#: the correlation id of the request or job being handled
CORRELATION_ID: ContextVar[str | None] = ContextVar("aura_log_correlation_id", default=None)
#: "auto" is JSON, or text when the stream is a terminal
LOG_FORMATS = ("auto", "json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_FILE_BYTES = 10 * 1024 * 1024
DEFAULT_FILE_COUNT = 5
_CONTEXT = ("job_id", "correlation_id")
#: a LogRecord's own attributes and the fields every line has: anything else on a record is a
#: field given with `extra=`
_NOT_EXTRA = frozenset(vars(logging.makeLogRecord({}))).union(
    {"message", "asctime", "time", "level", "logger", "exc"}, _CONTEXT
)
_ENCODER = msgspec.json.Encoder(enc_hook=str)

Secrets = Callable[[], Iterable[str]]


def bind_job(job_id: str, correlation_id: str | None = None) -> None:
    """Name `job_id` (and its correlation id) in every record logged from here on in the
    current context: call it at the start of a task of its own (a job's run), whose context
    is a copy, so nothing outside it is touched."""
    JOB_ID.set(job_id)
    CORRELATION_ID.set(correlation_id)


def bind_correlation(correlation_id: str) -> None:
    """Name `correlation_id` in every record logged from here on in the current context (a
    request's handler: aiohttp runs each request in a task of its own)."""
    CORRELATION_ID.set(correlation_id)


class ContextFilter(logging.Filter):
    """Copies the bound job and correlation ids onto each record (a record's own, given with
    `extra=`, win). A handler's filter: a logger's would miss its children's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if "job_id" not in fields:
            record.job_id = JOB_ID.get()
        if "correlation_id" not in fields:
            record.correlation_id = CORRELATION_ID.get()
        return True


def environment_secrets() -> list[str]:
    """The secret values set in the environment (the speech API's key, the access token)."""
    return list(secret_values(os.environ.get(name) for name in SECRET_ENV_VARS))


class _RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: Secrets | None = None) -> None:
        super().__init__()
        if secrets is None:  # the environment's, read once: it is not read for each record
            found = tuple(environment_secrets())
            secrets = lambda: found  # noqa: E731
        #: the secret values to replace, asked once per record (they may change as it runs)
        self.secrets: Secrets = secrets
        self._sorted: tuple[tuple[str, ...], list[str]] = ((), [])

    def _parts(self, record: logging.LogRecord) -> tuple[Callable[[str], str], str, str | None]:
        """A redactor for this record, its message and its traceback (or stack), redacted."""
        found = tuple(self.secrets())
        if found != self._sorted[0]:  # a longer one first: one holding another is replaced whole
            self._sorted = (found, sorted(set(found), key=len, reverse=True))
        secrets = self._sorted[1]

        def redact(text: str) -> str:
            return redact_key_like(redact_secrets(text, secrets))

        if record.exc_info and not record.exc_text:  # cached for the next handler
            record.exc_text = self.formatException(record.exc_info)
        trace = record.exc_text or None
        if record.stack_info:
            trace = "\n".join(filter(None, (trace, self.formatStack(record.stack_info))))
        return redact, redact(record.getMessage()), trace and redact(trace)


class JsonFormatter(_RedactingFormatter):
    """One JSON object a line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        redact, message, trace = self._parts(record)
        fields: dict[str, Any] = {
            "time": format_ts(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for name in _CONTEXT:
            if value := getattr(record, name, None):
                fields[name] = redact(value)  # a job id may come from a request's path
        for name, value in record.__dict__.items():
            if name not in _NOT_EXTRA:
                fields[name] = redact(value) if isinstance(value, str) else value
        if trace:
            fields["exc"] = trace
        return _ENCODER.encode(fields).decode()


class TextFormatter(_RedactingFormatter):
    """`2026-12-07T19:00:00.123Z WARNING aura.http: message (job J, correlation id C)`, then
    the traceback's lines; an id the message already names is not repeated."""

    def format(self, record: logging.LogRecord) -> str:
        redact, message, trace = self._parts(record)
        moment = format_ts(datetime.fromtimestamp(record.created, UTC))[:23] + "Z"
        context = [
            f"{label} {redact(value)}"
            for label, value in (
                ("job", getattr(record, "job_id", None)),
                ("correlation id", getattr(record, "correlation_id", None)),
            )
            if value and value not in message
        ]
        line = f"{moment} {record.levelname} {record.name}: {message}"
        if context:
            line += f" ({', '.join(context)})"
        return f"{line}\n{trace}" if trace else line


class LogSettings(NamedTuple):
    """How the process logs (`aura serve`: AURA_LOG_* or --log-*)."""

    #: one of LOG_FORMATS, for the stream (a file is always JSON)
    format: str = "auto"
    #: one of LOG_LEVELS: records below it are dropped (the access log is INFO)
    level: str = "INFO"
    #: also log to this file (inside the data folder: see `log_file_in`)
    file: Path | None = None
    #: a file rotates once it would pass this many bytes
    file_bytes: int = DEFAULT_FILE_BYTES
    #: rotated files kept (file.1 ... file.N); older ones are deleted
    file_count: int = DEFAULT_FILE_COUNT


def log_file_in(settings: Settings, name: str) -> Path:
    """The log file `name` says: relative to the data folder, or absolute inside it (symlinks
    resolved), and none of Aura's own files there (the log's database, its lock, the saved
    settings, a job's folder), which it would overwrite or rotate away. Anything else is
    InvalidInput:AURA_LOG_FILE."""
    folder = settings.data_dir.resolve()
    path = (folder / name).resolve()
    if folder not in path.parents:
        fault = f"is not inside the data folder {folder}"
    elif settings.jobs_dir.resolve() in [path, *path.parents] or (
        path.parent == folder
        and (path.name.startswith((DB_FILE_NAME, LOCK_FILE_NAME, SETTINGS_FILE)))
    ):
        fault = "is one of Aura's own files in the data folder"
    else:
        return path
    raise AuraError.of(
        "InvalidInput:AURA_LOG_FILE",
        f"the log file {name!r} {fault}",
        remediation="Name a file of its own inside the data folder (e.g. logs/aura.log), or "
        "unset AURA_LOG_FILE / --log-file.",
        details={"field": "AURA_LOG_FILE"},
    )


class Logs:
    """The handlers `configure_logging` put on the root logger; `close()` takes them off."""

    def __init__(self, handlers: list[logging.Handler]) -> None:
        self.handlers = handlers

    def use_secrets(self, secrets: Secrets) -> None:
        """Redact these secret values (asked for each record) from now on."""
        for handler in self.handlers:
            if isinstance(handler.formatter, _RedactingFormatter):
                handler.formatter.secrets = secrets

    def close(self) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()


def configure_logging(
    settings: LogSettings, *, stream: TextIO | None = None, secrets: Secrets | None = None
) -> Logs:
    """Send every record at `settings.level` or above to `stream` (stderr) and the file, if
    any, in place of any handler the root logger had, redacting `secrets` (by default the
    environment's; `Logs.use_secrets` changes them). Raises OSError if the file cannot be
    opened."""
    stream = sys.stderr if stream is None else stream
    text = settings.format == "text" or (settings.format == "auto" and stream.isatty())
    console = logging.StreamHandler(stream)
    console.setFormatter(TextFormatter(secrets) if text else JsonFormatter(secrets))
    handlers: list[logging.Handler] = [console]
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        file = logging.handlers.RotatingFileHandler(
            settings.file,
            maxBytes=settings.file_bytes,
            backupCount=settings.file_count,
            encoding="utf-8",
        )
        file.setFormatter(JsonFormatter(secrets))
        handlers.append(file)
    # What no line shows is not gathered for each record (the logging HOWTO's "Optimization")
    logging._srcfile = None  # the caller's file and line
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    root.setLevel(settings.level)
    return Logs(handlers)
