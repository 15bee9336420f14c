"""Secrets out of what is shown: the one marker, the one walk over JSON-like values.

Each caller knows its own secrets (the error mapping: the environment's and the settings' key;
the HTTP diagnostics: the server's token and every key configured in its life) and picks what
it replaces: secret values wherever they appear, key-like text (`sk-...`, `Bearer ...`,
`token=...`), members named like a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "REDACTED",
    "SECRET_NAME",
    "redact_json",
    "redact_key_like",
    "redact_secrets",
]

#: what replaces a secret, everywhere
REDACTED = "[REDACTED]"
#: a member name that says its value is a secret
SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password|authorization|cookie)", re.I)
_KEY_LIKE = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)\b(api[_-]?key|token|authorization)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{4,}"),
)
#: what each of _KEY_LIKE needs to match: text without any is left as it is at once (the server's
#: log runs every line and field through here)
_KEY_HINT = re.compile(r"sk-|(?i:bearer|api[_-]?key|token|authorization)")


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced (give the longest first, so a
    secret that holds another is replaced whole)."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_key_like(text: str) -> str:
    """`text` with what looks like a key or a bearer token replaced, whoever's it is."""
    if _KEY_HINT.search(text) is None:
        return text
    text = _KEY_LIKE[0].sub(REDACTED, text)
    text = _KEY_LIKE[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_LIKE[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_json(
    value: Any,
    redact: Callable[[str], str],
    *,
    secret_members: bool = False,
    member_names: bool = False,
) -> Any:
    """`value` (JSON-like) with `redact` applied to each of its strings (tuples become lists).

    :param secret_members: a member named like a secret (SECRET_NAME) with a value that is not
        empty is replaced whole
    :param member_names: member names are redacted too (else they are kept as they are)
    """

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {
                (redact(k) if member_names and isinstance(k, str) else k): (
                    REDACTED if secret_members and v and SECRET_NAME.search(str(k)) else walk(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(value)
