"""A job's diagnostics bundle: its events, its state and the system's facts, with secrets removed.

Redaction is by key (anything named like a key, token, secret or password) and by value (the
server's token and API keys, from the environment or saved from the page, now or earlier in the
server's life, wherever they appear in a string), so a secret that slipped into an error message
or a brief is still never shown. `/log` redacts by value only (LineRedactor).
"""

from __future__ import annotations

import platform
import sys
from functools import partial
from importlib import metadata
from typing import Any

import msgspec

from aura.engine.config.saved_settings import secret_values
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.redaction import redact_json, redact_secrets
from aura.http.keys import HttpConfig
from aura.http.wire import ENCODER, job_view, log_line
from aura.projections.events import Recorded
from aura.projections.job import JobState

__all__ = [
    "LineRedactor",
    "diagnostics",
    "redact",
    "redact_values",
    "secrets_of",
    "system_facts",
]

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
    return redact_json(value, partial(redact_secrets, secrets=secrets), secret_members=True)


def _version() -> str:
    try:
        return metadata.version("aura-jobs")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        return "unknown"


def secrets_of(config: HttpConfig, engine: Engine) -> tuple[str, ...]:
    """The values never shown: the server's token and every API key configured, the one in use
    (saved from the page, or the environment's), the environment's it may have replaced, and
    those saved earlier in this server's life (Engine.past_keys). Longest first (a secret that
    holds another is replaced whole); values shorter than MIN_KEY_CHARS are left out, as
    replacing them would blank ordinary words."""
    values = {
        config.token,
        engine.settings.openai_api_key,
        engine.base_settings.openai_api_key,
        *engine.past_keys,
        *engine.settings.database_secrets,
    }
    return secret_values(values)


def redact_values(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` (JSON-like) with every secret substring of its strings, member names included,
    replaced; unlike `redact`, members named like a secret are kept (a /log line is shown as
    stored, less the secrets)."""
    return redact_json(value, partial(redact_secrets, secrets=secrets), member_names=True)


class LineRedactor:
    """Redacts the secrets from encoded JSON lines (a /log page): a line is looked for each
    secret as JSON encodes it (bytes, cheap), and only a line holding one is decoded, redacted
    and encoded again (so a secret like `1234` is never replaced in a number or the syntax)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets
        #: each secret as it appears inside an encoded JSON string (escapes included)
        self.patterns = tuple(ENCODER.encode(s)[1:-1] for s in secrets)

    def __call__(self, line: bytes) -> bytes:
        if not any(p in line for p in self.patterns):
            return line
        return ENCODER.encode(redact_values(msgspec.json.decode(line), self.secrets))


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
            "database_url": str(settings.database_url_shown),
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
