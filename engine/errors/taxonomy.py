"""The fixed error taxonomy: every failure a user sees has a code, a message and a remediation.

Codes are `Name` or `Name:{PARAM}` (`MissingApiKey:OPENAI_API_KEY`). docs/errors.md documents
every code here; a test keeps the two equal. `AuraError` carries one to the edge (HTTP, CLI),
where it becomes a problem+json response or a one-line message.
"""

from __future__ import annotations

from typing import Any

import msgspec

from aura.projections.events import ErrorInfo

__all__ = [
    "TAXONOMY",
    "AuraError",
    "CodeSpec",
    "Conflict",
    "JobNotFound",
    "base_code",
    "error_info",
    "make_error",
]


class CodeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One code of the taxonomy: its HTTP status, a title and the default remediation."""

    title: str
    remediation: str
    http_status: int = 500


#: The taxonomy, by base code (the part before `:`). Documented in docs/errors.md.
TAXONOMY: dict[str, CodeSpec] = {
    "MissingApiKey": CodeSpec(
        title="A provider's API key is not configured",
        remediation="Save the key in the page's Settings (or set the environment variable named "
        "in the code, e.g. OPENAI_API_KEY, where the server runs and restart it), or choose a "
        'provider that needs no key (tts: "espeak"), then retry: a retry uses the key saved '
        "before it.",
        http_status=400,
    ),
    "RequiresNvidiaGPU": CodeSpec(
        title="NVIDIA GPU encoding was asked for but no usable NVIDIA GPU was found",
        remediation="Set the encoder option to 'auto' or 'x264', or install the NVIDIA driver "
        "on a machine with an NVIDIA GPU, then retry.",
        http_status=400,
    ),
    "UnsupportedOS": CodeSpec(
        title="This operating system is not supported",
        remediation="Run Aura on Linux or macOS (on Windows: inside WSL 2 or a Linux container).",
        http_status=500,
    ),
    "FFmpegNotFound": CodeSpec(
        title="ffmpeg was not found",
        remediation="Install ffmpeg (Debian/Ubuntu: 'apt-get install ffmpeg') or put it on PATH "
        "(or set AURA_FFMPEG), then run the system check and retry.",
        http_status=500,
    ),
    "FFmpegFailedExitCode": CodeSpec(
        title="ffmpeg exited with an error",
        remediation="Read the ffmpeg output in the error details; check the inputs and the "
        "options, run the system check, then retry the step.",
        http_status=500,
    ),
    "ToolNotFound": CodeSpec(
        title="A program a step needs (e.g. espeak-ng) was not found",
        remediation="Install the program named in the code (Debian/Ubuntu: 'apt-get install "
        "espeak-ng') or set its path (AURA_ESPEAK), then run the system check and retry.",
        http_status=500,
    ),
    "ToolCrashed": CodeSpec(
        title="A program a step runs was killed by a signal",
        remediation="Read the signal and the program's last output in the error details; check "
        "the inputs it was given (e.g. unusual characters in the script) and the machine's "
        "memory, run the system check, then retry the step.",
        http_status=500,
    ),
    "OutOfDiskSpace": CodeSpec(
        title="Not enough free disk space",
        remediation="Free disk space in the data folder's file system (or point --data-dir at "
        "a larger one), then retry.",
        http_status=507,
    ),
    "OutputDirectoryNotWritable": CodeSpec(
        title="The output folder cannot be written",
        remediation="Make the data folder writable (check its permissions, that it is a folder "
        "and not a file, and that its file system is not read-only), then retry.",
        http_status=500,
    ),
    "LogUnreadable": CodeSpec(
        title="The data folder's event log cannot be read",
        remediation="Move the data folder's aura.db aside (keep it for a report) or point "
        "--data-dir at another folder; a log from a newer Aura needs that newer Aura.",
        http_status=500,
    ),
    "LogUnwritable": CodeSpec(
        title="The data folder's event log refuses writes",
        remediation="Free disk space in the file system holding the data folder's aura.db, or "
        "make it writable again (a read-only mount, its permissions); a running server tries "
        "again by itself and records what waits as soon as the log takes writes (GET "
        "/api/health answers 200 again): nothing needs resubmitting.",
        http_status=503,
    ),
    "DatabaseUnavailable": CodeSpec(
        title="The log's database does not answer",
        remediation="Check that the PostgreSQL server in AURA_DATABASE_URL is running and that "
        "this machine reaches it (the network, a firewall, its max_connections). A running "
        "server reconnects by itself: retry once GET /api/health answers 200 (a submit sent "
        "again with the same Idempotency-Key cannot create the job twice); a command that "
        "stopped: run it again.",
        http_status=503,
    ),
    "DatabaseRightsMissing": CodeSpec(
        title="The database role lacks rights Aura needs",
        remediation="Grant the role in AURA_DATABASE_URL the rights the message names (see the "
        "role's rights in docs/operations.md), or connect as the role that owns Aura's tables, "
        "then start Aura again.",
        http_status=500,
    ),
    "SettingsUnreadable": CodeSpec(
        title="The data folder's saved settings cannot be read",
        remediation="Fix or delete the settings.json named in the message (deleting it goes back "
        "to the environment's values; save the settings again in the page), then start Aura "
        "again.",
        http_status=500,
    ),
    "InvalidInput": CodeSpec(
        title="The request has an invalid field",
        remediation="Correct the field named in the code (see the detail) and submit again.",
        http_status=400,
    ),
    "StepTimeout": CodeSpec(
        title="A step ran past its time limit",
        remediation="Retry the job (a retry keeps the job's options); if it keeps timing out, "
        "submit it again with a larger options.timeouts for the step (seconds), or a lower "
        "quality.",
        http_status=504,
    ),
    "TransientNetworkFailure": CodeSpec(
        title="A network service could not be reached",
        remediation="Check the network connection and the provider's base URL, then retry.",
        http_status=503,
    ),
    "Interrupted": CodeSpec(
        title="The engine stopped while the job was running",
        remediation="Retry the job: steps that finished are reused.",
        http_status=500,
    ),
    "JobNotFound": CodeSpec(
        title="No such job",
        remediation="Check the job id (GET /api/jobs lists them).",
        http_status=404,
    ),
    "InvalidState": CodeSpec(
        title="The job cannot do that in its current state",
        remediation="Wait for the job to finish (retry needs Failed or Canceled; cancel needs "
        "Queued or Running), then try again.",
        http_status=409,
    ),
    "Unauthorized": CodeSpec(
        title="A valid token is required",
        remediation="Send the server's AURA_TOKEN as 'Authorization: Bearer <token>'.",
        http_status=401,
    ),
    "Forbidden": CodeSpec(
        title="The request was refused: it came from another site, or named another host",
        remediation="Call the server at its loopback address (http://127.0.0.1:PORT or "
        "http://localhost:PORT) from a client that sends no Origin (curl, aura) or this server's "
        "own origin (a page served from it); to reach it under another name, set AURA_TOKEN.",
        http_status=403,
    ),
    "UnsupportedMediaType": CodeSpec(
        title="The request body is not JSON",
        remediation="Send the body with 'Content-Type: application/json' (or send no body).",
        http_status=415,
    ),
    "NotFound": CodeSpec(
        title="No such resource",
        remediation="Check the URL; GET /api/openapi.json lists the API.",
        http_status=404,
    ),
    "MethodNotAllowed": CodeSpec(
        title="The resource does not support this method",
        remediation="Check the method; GET /api/openapi.json lists each path's methods.",
        http_status=405,
    ),
    "PayloadTooLarge": CodeSpec(
        title="The request body is too large",
        remediation="Send a smaller request body.",
        http_status=413,
    ),
    "BadRequest": CodeSpec(
        title="The request is not valid HTTP/1.1",
        remediation="Send a well-formed HTTP/1.1 request, as an HTTP library, curl or aura does "
        "(the detail names what could not be parsed); a client that speaks HTTPS must call "
        "this server with 'http://' or through a TLS proxy.",
        http_status=400,
    ),
    "HeadersTooLarge": CodeSpec(
        title="The request line or the headers are too large",
        remediation="Send a request line and headers of at most 8,190 bytes each, and at most "
        "128 headers (look for a very long URL or an oversized cookie).",
        http_status=431,
    ),
    "RequestTimeout": CodeSpec(
        title="The request line and headers did not arrive in time",
        remediation="Send the request line and headers at once: the server waits "
        "AURA_HEAD_TIMEOUT seconds (10 by default) for them from the connection's start, or "
        "from the first byte of a further request; check the network to the server.",
        http_status=408,
    ),
    "RangeNotSatisfiable": CodeSpec(
        title="The requested range holds no byte of the file",
        remediation="Ask for one byte range inside the file (its size is in Content-Range), or "
        "send no Range header for the whole file.",
        http_status=416,
    ),
    "PreconditionFailed": CodeSpec(
        title="The video is not the one the request's condition names",
        remediation="Download the video again without If-Match or If-Unmodified-Since, or with "
        "its current ETag: it changed since (a retry made a new one).",
        http_status=412,
    ),
    "ServerBusy": CodeSpec(
        title="The server has as many live streams open as it allows",
        remediation="Try again in a few seconds; close the streams no longer followed (each "
        "open page or `aura watch` holds one).",
        http_status=503,
    ),
    "Internal": CodeSpec(
        title="An unexpected internal error",
        remediation="Retry; if it happens again, download the job's diagnostics "
        "(GET /api/jobs/{id}/diagnostics) and report it with the correlation id.",
        http_status=500,
    ),
}


def base_code(code: str) -> str:
    """`MissingApiKey:OPENAI_API_KEY` -> `MissingApiKey`."""
    return code.split(":", 1)[0]


def make_error(
    code: str,
    message: str,
    *,
    remediation: str | None = None,
    details: dict[str, Any] | None = None,
    step: str | None = None,
    correlation_id: str = "",
    attempt: int | None = None,
) -> ErrorInfo:
    """An ErrorInfo for `code`, with the taxonomy's remediation unless one is given."""
    spec = TAXONOMY.get(base_code(code))
    if spec is None:
        raise ValueError(f"{code!r} is not in the error taxonomy")
    return ErrorInfo(
        code=code,
        message=message,
        remediation=remediation or spec.remediation,
        details=details or {},
        correlation_id=correlation_id,
        step=step,
        attempt=attempt,
    )


class AuraError(Exception):
    """An error with a taxonomy code, carried up to the HTTP or CLI edge."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(f"{info.code}: {info.message}")
        self.info = info

    @classmethod
    def of(cls, code: str, message: str, **kwargs: Any) -> AuraError:
        return cls(make_error(code, message, **kwargs))

    @property
    def code(self) -> str:
        return self.info.code

    @property
    def http_status(self) -> int:
        return TAXONOMY[base_code(self.info.code)].http_status


class JobNotFound(AuraError):
    def __init__(self, job_id: str) -> None:
        # an id is 32 characters; a longer one is shown in part (an answer echoes no megabytes)
        shown = repr(job_id) if len(job_id) <= 64 else f"{job_id[:64]!r}... ({len(job_id)} chars)"
        super().__init__(make_error("JobNotFound", f"no job with id {shown}"))
        self.job_id = job_id


class Conflict(AuraError):
    """The job's state does not allow the request (retry while running, cancel when done)."""

    def __init__(self, job_id: str, message: str, remediation: str | None = None) -> None:
        super().__init__(
            make_error("InvalidState", f"job {job_id}: {message}", remediation=remediation)
        )
        self.job_id = job_id


def error_info(error: BaseException) -> ErrorInfo:
    """The ErrorInfo of an AuraError; anything else is `Internal` (its type, not its text)."""
    if isinstance(error, AuraError):
        return error.info
    return make_error("Internal", f"unexpected {type(error).__name__}")
