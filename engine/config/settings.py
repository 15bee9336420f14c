"""Engine settings: defaults, overridden by AURA_* environment variables, then by arguments."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from yarl import URL

from aura.engine.errors.taxonomy import AuraError
from aura.store import Durability

__all__ = [
    "DATABASE_URL_SCHEMES",
    "DEFAULT_OPENAI_BASE_URL",
    "Settings",
    "bad_base_url",
    "base_url_fault",
    "database_url_fault",
    "database_url_without_password",
]

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
#: the schemes of a PostgreSQL URL (AURA_DATABASE_URL, --database-url)
DATABASE_URL_SCHEMES = ("postgresql", "postgres")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    #: the data folder: aura.db, per-job work folders and the finished videos
    data_dir: Path = Path("./data")
    #: the PostgreSQL database holding the log (postgresql://...); None: aura.db in data_dir
    database_url: str | None = None
    durability: Durability = Durability.NORMAL
    #: jobs rendering at once; the rest wait as Queued
    max_concurrent_jobs: int = 1
    #: where the jobs' work folders and videos live: a folder every worker reaches (a shared
    #: mount) when workers run on several machines; None: the data folder's jobs/
    artifacts_dir: Path | None = None
    #: on PostgreSQL, seconds a worker's claim on a job lasts unless renewed (every third of it)
    lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: on PostgreSQL, whether this engine claims and runs jobs (`aura serve --no-worker`: no)
    runs_jobs: bool = True
    #: threads each ffmpeg may use (0: ffmpeg decides)
    ffmpeg_threads: int = 2
    #: niceness added to ffmpeg and espeak-ng, so the API and live streams stay responsive
    process_nice: int = 10
    #: seconds between SIGTERM and SIGKILL when a step's process is stopped
    kill_grace_seconds: float = 2.0
    #: default time limit of each step, in seconds (a job's options may override per step)
    step_timeouts: dict[str, float] = msgspec.field(
        default_factory=lambda: {
            "preflight": 30.0,
            "narration": 300.0,
            "broll": 900.0,
            "subtitles": 120.0,
            "mux": 1800.0,
        }
    )
    #: what start-up does with a job the log shows as running: resume it, or fail it
    on_interrupted: Literal["resume", "fail"] = "resume"
    #: the least free disk space preflight accepts, in bytes, on top of the render's estimate
    min_free_disk_bytes: int = 200 * 1024 * 1024
    ffmpeg_path: str = "ffmpeg"
    ffprobe_path: str = "ffprobe"
    espeak_path: str = "espeak-ng"
    #: OpenAI-compatible speech API (narration with tts="openai")
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    openai_api_key: str | None = None
    openai_tts_model: str = "tts-1"

    def __post_init__(self) -> None:
        # Absolute from the start: steps run ffmpeg in the job's folder, and the paths recorded
        # in events must not depend on the working directory of whoever reads them.
        msgspec.structs.force_setattr(self, "data_dir", self.data_dir.absolute())
        if self.artifacts_dir is not None:
            msgspec.structs.force_setattr(self, "artifacts_dir", self.artifacts_dir.absolute())

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults, then AURA_* variables (and OPENAI_API_KEY), then `overrides`."""
        env = os.environ
        values: dict[str, object] = {}
        for name, var in _ENV.items():
            if var in env:
                values[name] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = msgspec.convert(values, cls, strict=False, dec_hook=_to_path)
        except msgspec.ValidationError as e:
            raise _bad_setting(e, values) from None
        fault = base_url_fault(settings.openai_base_url)
        if fault is not None:
            raise bad_base_url(fault)
        if settings.database_url is not None:
            fault = database_url_fault(settings.database_url)
            if fault is not None:
                raise _bad_database_url(fault)
        return settings

    @property
    def database_url_shown(self) -> str | None:
        """The database URL without its password (in the authority or the query): safe to
        show. None without one."""
        if self.database_url is None or not self.database_secrets:
            return self.database_url
        return database_url_without_password(self.database_url)

    @property
    def database_secrets(self) -> tuple[str, ...]:
        """The passwords the database URL carries, as written and decoded (secrets: redacted
        wherever shown)."""
        url = None if self.database_url is None else _parsed_url(self.database_url)
        if url is None:
            return ()
        found = (url.password, url.raw_password, *url.query.getall("password", ()))
        return tuple(dict.fromkeys(p for p in found if p))

    @property
    def openai_base_url_shown(self) -> str:
        """The speech API's base URL without a user, password, query or fragment in it: safe
        to show (a value that is no http(s) URL is not shown at all)."""
        url = _parsed_url(self.openai_base_url)
        if url is None or url.scheme not in ("http", "https") or not url.host:
            return "(not an http or https URL)"
        return str(url.with_user(None).with_query(None).with_fragment(None))

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs" if self.artifacts_dir is None else self.artifacts_dir

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id


def base_url_fault(value: str) -> str | None:
    """What is wrong with a speech API base URL, never quoting it (it may hold a password);
    None if it is fine."""
    url = _parsed_url(value)
    if url is None:
        return "it is not a URL"
    if url.scheme not in ("http", "https") or not url.host:
        return "it must be an absolute http or https URL, such as https://api.openai.com/v1"
    if url.user is not None or url.password is not None:
        return "it carries a user or password; the API key is sent as a bearer token instead"
    if "?" in value or "#" in value:  # even an empty one: the request path is appended
        return "it must have no query or fragment (the key comes from OPENAI_API_KEY)"
    return None


def database_url_fault(value: str) -> str | None:
    """What is wrong with a PostgreSQL URL, never quoting it (it may hold a password); None if
    it is fine."""
    url = _parsed_url(value)
    if url is None:
        return "it is not a URL"
    if url.scheme not in DATABASE_URL_SCHEMES or not value.startswith(f"{url.scheme}://"):
        return "it must be a PostgreSQL URL, such as postgresql://aura@db.example:5432/aura"
    if not (url.path or "").strip("/"):
        return "it must name the database, such as postgresql://aura@db.example:5432/aura"
    return None


def _bad_database_url(fault: str) -> AuraError:
    return AuraError.of(
        "InvalidInput:AURA_DATABASE_URL",
        f"AURA_DATABASE_URL (or --database-url) is not usable: {fault}",
        remediation="Set AURA_DATABASE_URL or --database-url to the log's database, such as "
        "postgresql://aura@db.example:5432/aura, or unset it to keep the log in the data "
        "folder, then start Aura again.",
        details={"field": "AURA_DATABASE_URL"},
    )


def database_url_without_password(value: str) -> str:
    """The database URL `value` without its password (in the authority or the query): safe to
    show."""
    url = _parsed_url(value)
    if url is None:
        return "(not a PostgreSQL URL)"
    if url.password is not None:
        url = url.with_password(None)
    return str(url.without_query_params("password"))


def _parsed_url(value: str) -> URL | None:
    """`value` as a URL whose parts can all be read, or None: yarl raises IndexError on some
    malformed authorities ('https://][@') and UnicodeError on a bad IDNA host ('http://xn--'),
    the latter only when the host is read."""
    try:
        url = URL(value)
        _ = (url.host, url.port, url.user, url.password)
    except (ValueError, IndexError):
        return None
    return url


def bad_base_url(fault: str) -> AuraError:
    return AuraError.of(
        "InvalidInput:AURA_OPENAI_BASE_URL",
        f"AURA_OPENAI_BASE_URL is not usable: {fault}",
        remediation="Set AURA_OPENAI_BASE_URL to the API's base URL, such as "
        "https://api.openai.com/v1, with no user, password or query (the key comes from "
        "OPENAI_API_KEY), then start Aura again.",
        details={"field": "AURA_OPENAI_BASE_URL"},
    )


def _bad_setting(error: msgspec.ValidationError, values: dict[str, object]) -> AuraError:
    """InvalidInput naming the environment variable (or setting) whose value is malformed."""
    match = re.search(r"at `\$\.(\w+)", str(error))
    name = match.group(1) if match else "settings"
    var = _ENV.get(name, name) if name in values else name
    return AuraError.of(
        f"InvalidInput:{var}",
        f"{var}={values.get(name)!r}: {error}",
        remediation=f"Correct or unset {var}, then start Aura again.",
        details={"field": var},
    )


def _to_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise TypeError(f"cannot convert {value!r} to {kind}")


_ENV: dict[str, str] = {
    "data_dir": "AURA_DATA_DIR",
    "database_url": "AURA_DATABASE_URL",
    "durability": "AURA_DURABILITY",
    "max_concurrent_jobs": "AURA_MAX_CONCURRENT_JOBS",
    "artifacts_dir": "AURA_ARTIFACTS_DIR",
    "lease_seconds": "AURA_LEASE_SECONDS",
    "ffmpeg_threads": "AURA_FFMPEG_THREADS",
    "process_nice": "AURA_PROCESS_NICE",
    "on_interrupted": "AURA_ON_INTERRUPTED",
    "ffmpeg_path": "AURA_FFMPEG",
    "ffprobe_path": "AURA_FFPROBE",
    "espeak_path": "AURA_ESPEAK",
    "openai_base_url": "AURA_OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
}
