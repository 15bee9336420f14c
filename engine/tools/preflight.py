"""The system check: one Finding per fact a render depends on, each failure with its own code.

`system_check(settings)` is what `aura doctor` prints and GET /api/system-check returns.
`job_findings(...)` is the same check for one job's needs (its encoder, narration provider and
size); the preflight step raises the first error among them and turns warnings into JobWarnings.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import platform
import sqlite3
from pathlib import Path
from typing import Any, Literal

import asyncpg
import msgspec
import psutil  # type: ignore[import-untyped]

from aura.engine.config.inputs import Brief, Options
from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import map_exception, redact
from aura.engine.errors.taxonomy import make_error
from aura.engine.files import atomic
from aura.engine.tools import gpu
from aura.engine.tools.process import ProcessFailed, ProgramNotFound, run_process
from aura.projections.events import ErrorInfo
from aura.store.errors import StoreError
from aura.store.log import DB_FILE_NAME, EventLog
from aura.store.pg import schema as pg_schema
from aura.store.pg.errors import CONNECTION_ERRORS, DB_ERRORS
from aura.store.schema import MIGRATIONS

__all__ = [
    "SUPPORTED_OS",
    "Finding",
    "check_disk",
    "check_gpu",
    "check_key",
    "check_os",
    "check_output_dir",
    "check_program",
    "estimate_bytes",
    "job_findings",
    "system_check",
]

#: platform.system() values Aura runs on (process groups and fsync of folders are POSIX)
SUPPORTED_OS = frozenset({"Linux", "Darwin"})
Status = Literal["ok", "warning", "error"]
#: a render's disk need: a fixed part plus this much per second of video (all intermediates)
_FIXED_BYTES = 8 * 1024 * 1024
_BYTES_PER_SECOND = 2 * 1024 * 1024
#: seconds the system check waits for the log's database to answer
_DATABASE_TIMEOUT = 5.0
#: espeak-ng speaks roughly this many characters per second
_CHARS_PER_SECOND = 12.0


class Finding(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One checked fact: ok, a warning (works, degraded) or an error (a render would fail)."""

    check: str
    status: Status
    message: str
    code: str | None = None
    remediation: str | None = None
    details: dict[str, Any] = {}

    @property
    def failed(self) -> bool:
        return self.status == "error"


def _ok(check: str, message: str, details: dict[str, Any] | None = None) -> Finding:
    return Finding(check=check, status="ok", message=message, details=details or {})


def _bad(
    check: str,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    status: Status = "error",
) -> Finding:
    info = make_error(code, message)
    return Finding(
        check=check,
        status=status,
        message=message,
        code=code,
        remediation=info.remediation,
        details=details or {},
    )


def check_os(system: str | None = None) -> Finding:
    """The operating system is one Aura supports."""
    name = system or platform.system()
    if name in SUPPORTED_OS:
        return _ok("os", f"{name} is supported", {"system": name})
    return _bad("os", f"UnsupportedOS:{name}", f"{name} is not supported", {"system": name})


async def check_program(check: str, path: str, settings: Settings) -> Finding:
    """`path` exists and runs (`-version`); ffmpeg/ffprobe map to FFmpegNotFound."""
    flag = "--version" if check == "espeak-ng" else "-version"
    try:
        result = await run_process([path, flag], settings)
    except (ProgramNotFound, ProcessFailed) as e:
        code = "FFmpegNotFound" if check in ("ffmpeg", "ffprobe") else f"ToolNotFound:{check}"
        why = "was not found" if isinstance(e, ProgramNotFound) else f"does not run ({e})"
        return _bad(check, code, f"{check} {why} at {path!r}", {"path": path})
    first = result.stdout.decode("utf-8", "replace").strip().splitlines()[:1]
    return _ok(check, first[0] if first else f"{path} runs", {"path": path})


async def check_voice(voice: str, settings: Settings) -> Finding:
    """espeak-ng has `voice` (it says so in 10 ms, speaking nothing), so narration will not stop
    on it after the job's first step."""
    try:
        await run_process([settings.espeak_path, "-v", voice, "-q", ""], settings)
    except ProcessFailed as e:
        if "voice does not exist" in e.stderr_tail:
            return _bad(
                "voice",
                "InvalidInput:brief.voice",
                f"espeak-ng has no voice {voice!r}",
                {"field": "brief.voice"},
            )
        return _bad("voice", "ToolNotFound:espeak-ng", f"espeak-ng does not run ({e})")
    return _ok("voice", f"espeak-ng speaks {voice!r}")


def estimate_bytes(brief: Brief | None) -> int:
    """A generous estimate of the disk space one render of `brief` needs."""
    chars = sum(len(line) for line in brief.script) if brief else 600
    seconds = chars / _CHARS_PER_SECOND + (len(brief.script) if brief else 10) + 1
    return int(_FIXED_BYTES + seconds * _BYTES_PER_SECOND)


def _existing_ancestor(folder: Path) -> Path:
    path = folder.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(folder: Path, settings: Settings, need_bytes: int) -> Finding:
    """Free space where `folder` lives is above the render's need plus the configured margin."""
    where = _existing_ancestor(folder)
    free = psutil.disk_usage(str(where)).free
    want = need_bytes + settings.min_free_disk_bytes
    details = {"path": str(where), "freeBytes": free, "requiredBytes": want}
    if free < want:
        message = f"{free / 1e6:.0f} MB free at {where}, {want / 1e6:.0f} MB needed"
        return _bad("disk", "OutOfDiskSpace", message, details)
    return _ok("disk", f"{free / 1e9:.1f} GB free at {where}", details)


def check_output_dir(folder: Path, *, create: bool = True) -> Finding:
    """`folder` can be created and written (a probe file, written atomically, then removed).
    Without `create` (the system check: a mistyped --data-dir must not leave folders behind) a
    missing folder is judged by its nearest existing parent, which is probed instead."""
    probed = folder
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            while not probed.exists() and probed.parent != probed:
                probed = probed.parent
    except OSError as e:
        info = map_exception(e, step=None)
        return _bad("output", info.code, info.message, {"path": str(folder)})
    refused = _write_refusal(probed)
    if refused is not None:
        info = map_exception(refused, step=None)
        message = f"{probed} cannot be written: {_reason(refused)}"
        return _bad("output", info.code, message, {"path": str(folder)})
    return _ok("output", f"{folder} is writable", {"path": str(folder)})


async def check_log(data_dir: Path, refusal: ErrorInfo | None = None) -> Finding:
    """The data folder takes writes (a probe file: SQLite grows the log there), its event log
    opens, read-only, with a schema this build reads, and `refusal` (a running server's
    LogUnwritable while its log refuses writes) is None. A writable folder without a log is
    fine: one is created on first use. The log's rows are not all decoded here."""
    path = data_dir / DB_FILE_NAME
    if refusal is not None:
        return _bad("log", refusal.code, refusal.message, {"path": str(path)} | refusal.details)
    refused = await asyncio.to_thread(_folder_refusal, data_dir)
    if refused is not None:  # a full disk, a read-only mount (a WAL log cannot even be read)
        return _unwritable(path, refused)
    if not path.exists():
        return _ok("log", f"no log yet at {path}; it is created on first use")
    try:
        async with await EventLog.open(data_dir, readonly=True) as log:
            version = await log.run_on_reader(_schema_version)
            last = await log.max_seq()
    except StoreError as e:
        return _bad("log", "LogUnreadable", f"{path}: {e}", {"path": str(path)})
    if version > len(MIGRATIONS):
        message = f"{path} has schema {version}, newer than this build's {len(MIGRATIONS)}"
        return _bad("log", "LogUnreadable", message, {"path": str(path)})
    return _ok("log", f"{path} reads ({last} events) and takes writes", {"path": str(path)})


async def check_database(settings: Settings, refusal: ErrorInfo | None = None) -> Finding:
    """The log's PostgreSQL database answers, with a schema this build reads (none yet is
    fine: it is created on first use), its role has the rights to run Aura on it (or to create
    it), and `refusal` is None. Its URL is shown without its password, and the database's
    messages are redacted of it."""
    shown = {"database": str(settings.database_url_shown)}
    if refusal is not None:
        return _bad("log", refusal.code, refusal.message, shown | refusal.details)
    assert settings.database_url is not None
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=_DATABASE_TIMEOUT)
        try:
            missing = await pg_schema.missing_rights(conn)
            if missing:
                role = await conn.fetchval("SELECT current_user")
                message = f"the role {role} lacks {', '.join(missing)}"
                return _bad("log", "DatabaseRightsMissing", message, shown | {"missing": missing})
            version = await pg_schema.schema_version(conn)
            last = await conn.fetchval("SELECT max(seq) FROM events") if version else None
        finally:
            await conn.close()
    except DB_ERRORS as e:  # TimeoutError is an OSError: a connection error
        why = redact(str(e) or type(e).__name__, settings)
        if isinstance(e, CONNECTION_ERRORS):
            message = f"the database does not answer: {why}"
            return _bad("log", "DatabaseUnavailable", message, shown)
        return _bad("log", "LogUnreadable", f"the database refused: {why}", shown)
    except StoreError as e:  # a schema newer than this build's
        return _bad("log", "LogUnreadable", str(e), shown)
    if not version:
        return _ok("log", f"no log yet in {shown['database']}; it is created on first use", shown)
    return _ok("log", f"{shown['database']} reads ({last or 0} events)", shown)


def _write_refusal(folder: Path) -> OSError | None:
    """Why `folder` refuses a new file (ENOSPC, EROFS, EACCES, ENOTDIR), or None when it takes
    one."""
    try:
        probe = atomic.write_bytes(folder / ".aura-write-check", b"ok")
        probe.unlink(missing_ok=True)  # a check running beside this one may have taken it
    except OSError as e:
        return e
    return None


def _folder_refusal(folder: Path) -> OSError | None:
    """`_write_refusal` of an existing folder (the output check judges any other path)."""
    return _write_refusal(folder) if folder.is_dir() else None


def _reason(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


def _unwritable(path: Path, error: OSError) -> Finding:
    details = {"path": str(path), "errno": errno.errorcode.get(error.errno or 0, "")}
    message = f"{path} cannot be written: its folder refuses new data ({_reason(error)})"
    return _bad("log", "LogUnwritable", message, details)


def _schema_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def check_gpu(encoder: str, status: gpu.GpuStatus | None = None) -> Finding:
    """An NVENC-capable GPU when `encoder` is nvenc (error) or auto (warning: libx264 is used)."""
    found = status if status is not None else gpu.detect()
    details = {"gpus": list(found.names), "canEncode": found.can_encode, "encoder": encoder}
    if found.usable:
        return _ok("gpu", f"NVENC available on {', '.join(found.names)}", details)
    if encoder == "x264":
        return _ok("gpu", "encoder x264 needs no GPU", details)
    reason = found.reason or f"{', '.join(found.names)} has no NVENC encoder"
    if encoder == "nvenc":
        return _bad("gpu", "RequiresNvidiaGPU", f"encoder nvenc needs a GPU: {reason}", details)
    message = f"no NVIDIA GPU that can encode ({reason}); encoding with libx264"
    return _bad("gpu", "RequiresNvidiaGPU", message, details, status="warning")


def check_key(name: str, value: str | None, *, required: bool) -> Finding:
    """A provider key is configured (never shown: only whether it is set)."""
    check = f"key:{name}"
    if value:
        return _ok(check, f"{name} is set")
    status: Status = "error" if required else "warning"
    message = f"{name} is not set (in the environment or saved in the page's Settings)" + (
        "" if required else "; tts 'openai' is unavailable"
    )
    return _bad(check, f"MissingApiKey:{name}", message, status=status)


async def system_check(settings: Settings, log_refusal: ErrorInfo | None = None) -> list[Finding]:
    """Every check, for the machine as it is now (a missing GPU or key is only a warning);
    `log_refusal`: a running server's LogUnwritable while its log refuses writes."""
    return [
        check_os(),
        await check_program("ffmpeg", settings.ffmpeg_path, settings),
        await check_program("ffprobe", settings.ffprobe_path, settings),
        await check_program("espeak-ng", settings.espeak_path, settings),
        await asyncio.to_thread(
            functools.partial(check_output_dir, create=False), settings.jobs_dir
        ),
        await (
            check_log(settings.data_dir, log_refusal)
            if settings.database_url is None
            else check_database(settings, log_refusal)
        ),
        check_disk(settings.data_dir, settings, estimate_bytes(None)),
        check_gpu("auto", await asyncio.to_thread(gpu.detect)),
        check_key("OPENAI_API_KEY", settings.openai_api_key, required=False),
    ]


async def job_findings(
    settings: Settings, brief: Brief, options: Options, work_dir: Path
) -> list[Finding]:
    """The checks one job depends on, in the order a user should fix them."""
    findings = [check_os()]
    if brief.tts == "openai":
        findings.append(check_key("OPENAI_API_KEY", settings.openai_api_key, required=True))
    findings.append(await check_program("ffmpeg", settings.ffmpeg_path, settings))
    # the steps check what they make with ffprobe, and the job its finished video
    findings.append(await check_program("ffprobe", settings.ffprobe_path, settings))
    if brief.tts == "espeak":
        espeak = await check_program("espeak-ng", settings.espeak_path, settings)
        findings.append(espeak)
        if not espeak.failed:
            findings.append(await check_voice(brief.voice, settings))
    findings.append(await asyncio.to_thread(check_output_dir, work_dir))
    findings.append(check_disk(work_dir, settings, estimate_bytes(brief)))
    findings.append(check_gpu(options.encoder, await asyncio.to_thread(gpu.detect)))
    return findings
