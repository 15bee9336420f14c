"""A job's diagnostics bundle: its events, its state and the system's facts, with secrets removed.

Redaction is by key (anything named like a key, token, secret or password) and by value (the
server's token and API keys, from the environment or saved from the page, wherever they appear
in a string), so a secret that slipped into an error message or a brief is still never shown.
"""

from __future__ import annotations

import platform
import re
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any

import msgspec

from aura.http.wire import ENCODER, job_view, log_line
from aura.projections.events import Recorded
from aura.projections.job import JobState

if TYPE_CHECKING:
    from aura.engine.engine import Engine
    from aura.engine.settings import Settings
    from aura.http.app import HttpConfig

__all__ = ["REDACTED", "diagnostics", "redact", "secrets_of", "system_facts"]

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization|cookie)", re.I)
#: settings shown in diagnostics (secrets are shown only as set / not set)
_SETTINGS = (
    "data_dir",
    "durability",
    "max_concurrent_jobs",
    "ffmpeg_threads",
    "process_nice",
    "kill_grace_seconds",
    "step_timeouts",
    "on_interrupted",
    "ffmpeg_path",
    "ffprobe_path",
    "espeak_path",
    "openai_base_url",
    "openai_tts_model",
)


def redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` (JSON-like) with secret-named members and secret substrings replaced."""
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) and v else redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    return value


def _version() -> str:
    try:
        return metadata.version("aura-jobs")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        return "unknown"


def secrets_of(config: HttpConfig, engine: Engine) -> tuple[str, ...]:
    """The values never shown: the server's token and every API key configured, the one in use
    (saved from the page, or the environment's) and the environment's it may have replaced."""
    values = (config.token, engine.settings.openai_api_key, engine.base_settings.openai_api_key)
    return tuple(v for v in values if v)


def system_facts(config: HttpConfig, settings: Settings) -> dict[str, Any]:
    """Facts of the server, with `settings` those in effect (saved values included)."""
    return {
        "auraVersion": _version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "settings": {name: str(getattr(settings, name)) for name in _SETTINGS}
        | {
            "openai_base_url": settings.openai_base_url_shown,
            "openaiKeyConfigured": settings.openai_api_key is not None,
        },
        "authRequired": config.token is not None,
    }


def diagnostics(
    state: JobState, records: list[Recorded], config: HttpConfig, engine: Engine
) -> dict[str, Any]:
    """Events (as in /log), state (as in GET /api/jobs/{id}) and system facts, redacted."""
    secrets = secrets_of(config, engine)
    bundle = {
        "jobId": state.job_id,
        "correlationId": state.correlation_id,
        "state": msgspec.to_builtins(job_view(state)),
        "events": msgspec.json.decode(ENCODER.encode([log_line(rec) for rec in records])),
        "system": system_facts(config, engine.settings),
    }
    result: dict[str, Any] = redact(bundle, secrets)
    return result
