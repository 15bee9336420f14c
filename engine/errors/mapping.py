"""Exceptions -> ErrorInfo: every failure a step raises becomes a taxonomy code.

`map_exception(exc, step=..., correlation_id=..., settings=...)` is what the runner calls when a
step raises. Secrets (the configured API key, anything that looks like a key or a bearer token)
are redacted from the message and the details, which end up in events and responses.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from typing import Any

import msgspec

from aura.engine.config.settings import Settings
from aura.engine.errors.redaction import redact_json, redact_key_like, redact_secrets
from aura.engine.errors.taxonomy import AuraError, make_error
from aura.engine.files.atomic import EmptyOutput
from aura.engine.tools.media import MediaRejected
from aura.engine.tools.process import ProcessFailed, ProgramNotFound
from aura.projections.events import ErrorInfo
from aura.store.errors import StoreFull, StoreUnavailable

__all__ = ["map_exception", "redact"]

#: environment variables whose values are secrets wherever they appear
SECRET_ENV_VARS = ("OPENAI_API_KEY", "AURA_TOKEN")
_FFMPEG_TOOLS = frozenset({"ffmpeg", "ffprobe"})
#: EEXIST: a file where the data folder (or one inside it) should be
_NOT_WRITABLE = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}
)
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_SPACE_TEXT = re.compile("|".join(re.escape(os.strerror(n)) for n in _NO_SPACE))


def _secrets(settings: Settings | None) -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS]
    if settings is not None and settings.openai_api_key:
        values.append(settings.openai_api_key)
    if settings is not None:
        values.extend(settings.database_secrets)
    return [v for v in values if len(v) >= 4]


def redact(text: str, settings: Settings | None = None) -> str:
    """`text` with known secret values and key-like tokens replaced (redaction.REDACTED)."""
    return redact_key_like(redact_secrets(text, _secrets(settings)))


def map_exception(
    exc: BaseException,
    *,
    step: str | None,
    correlation_id: str = "",
    settings: Settings | None = None,
) -> ErrorInfo:
    """The ErrorInfo for `exc` raised in `step`, secrets redacted."""
    info = _classify(exc, step, settings)
    return msgspec.structs.replace(
        info,
        message=redact(info.message, settings),
        details=redact_json(info.details, lambda text: redact(text, settings)),
        step=info.step or step,
        correlation_id=info.correlation_id or correlation_id,
    )


def _classify(exc: BaseException, step: str | None, settings: Settings | None) -> ErrorInfo:
    """Pick the code; the order matters (ProgramNotFound is an OSError, so is ConnectionError)."""
    match exc:
        case AuraError():
            return exc.info
        case TimeoutError():
            name = step or "unknown"
            return make_error(f"StepTimeout:{name}", f"step {name} ran past its time limit")
        case StoreFull():
            return make_error(
                "OutOfDiskSpace",
                f"the event log cannot grow: the disk holding it is full ({exc})",
                details={"exception": str(exc)[:500]},
            )
        case StoreUnavailable():
            return make_error(
                "DatabaseUnavailable",
                f"the log's database does not answer ({exc})",
                details={"exception": str(exc)[:500]},
            )
        case ProgramNotFound():
            return _program_not_found(exc, settings)
        case ProcessFailed():
            return _process_failed(exc, settings)
        case EmptyOutput() | MediaRejected():
            return make_error(
                "Internal",
                f"a step produced an unusable file: {exc}",
                details={"file": exc.path.name},
            )
        case ConnectionError():
            return _network(exc)
        case OSError() if exc.errno is not None:
            return _os_error(exc)
    if _is_client_error(exc):
        return _network(exc)
    return make_error(
        "Internal", f"unexpected {type(exc).__name__}", details={"exception": str(exc)[:500]}
    )


def _configured_tools(settings: Settings | None) -> tuple[str, ...]:
    """The paths configured for ffmpeg and ffprobe, whatever their names."""
    return (settings.ffmpeg_path, settings.ffprobe_path) if settings else ()


def _program_not_found(exc: ProgramNotFound, settings: Settings | None) -> ErrorInfo:
    name = os.path.basename(exc.program)
    details = {"program": exc.program}
    if exc.program in _configured_tools(settings) or name.startswith(tuple(_FFMPEG_TOOLS)):
        return make_error("FFmpegNotFound", f"{exc.program!r} was not found", details=details)
    return make_error(f"ToolNotFound:{name}", f"{exc.program!r} was not found", details=details)


def _process_failed(exc: ProcessFailed, settings: Settings | None) -> ErrorInfo:
    details = {"program": exc.program, "exitCode": exc.returncode, "stderrTail": exc.stderr_tail}
    last = exc.stderr_tail.strip().splitlines()[-1:] or [""]
    message = f"{exc.program} exited with status {exc.returncode}: {last[0][:300]}".rstrip(": ")
    # a tool reports a full disk only in its words: strerror(ENOSPC or EDQUOT)
    full = [line for line in exc.stderr_tail.splitlines() if _NO_SPACE_TEXT.search(line)]
    if full:
        message = f"{exc.program} ran out of disk space: {full[-1].strip()[:300]}"
        return make_error("OutOfDiskSpace", message, details=details)
    if exc.returncode < 0:  # a crash (SIGSEGV) or a kill from outside (the OOM killer)
        return _crashed(exc, details)
    # ffmpeg or ffprobe by name, or the program configured as either (AURA_FFPROBE=/opt/probe2)
    if exc.program in _FFMPEG_TOOLS or exc.argv[0] in _configured_tools(settings):
        return make_error(f"FFmpegFailedExitCode:{exc.returncode}", message, details=details)
    return make_error("Internal", message, details=details)


def _crashed(exc: ProcessFailed, details: dict[str, Any]) -> ErrorInfo:
    number = -exc.returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    message = f"{exc.program} was killed by {name} ({number})"
    return make_error(f"ToolCrashed:{exc.program}", message, details=details | {"signal": name})


def _network(exc: BaseException) -> ErrorInfo:
    return make_error(
        "TransientNetworkFailure",
        f"network failure: {type(exc).__name__}: {exc}"[:500],
        details={"exception": type(exc).__name__},
    )


def _os_error(exc: OSError) -> ErrorInfo:
    code = exc.errno or 0
    details: dict[str, Any] = {"errno": errno.errorcode.get(code, str(code))}
    if exc.filename is not None:
        details["path"] = str(exc.filename)
    if exc.filename2 is not None:  # a rename: the destination is what is in the way
        details["path"], details["from"] = str(exc.filename2), details.get("path")
    reason = os.strerror(code)
    if code in _NO_SPACE:
        return make_error("OutOfDiskSpace", f"no space left: {reason}", details=details)
    if code in _NOT_WRITABLE:
        where = f" ({details['path']})" if "path" in details else ""
        return make_error(
            "OutputDirectoryNotWritable", f"cannot write{where}: {reason}", details=details
        )
    if code in (errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH):
        return _network(exc)
    return make_error("Internal", f"unexpected OSError: {reason}", details=details)


def _is_client_error(exc: BaseException) -> bool:
    """aiohttp's ClientError, without importing aiohttp for every mapping."""
    return any(
        cls.__module__.startswith("aiohttp") and cls.__name__ == "ClientError"
        for cls in type(exc).__mro__
    )
