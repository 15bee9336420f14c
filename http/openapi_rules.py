"""What the server checks beyond what its structs' own schemas say, stated for the OpenAPI
document as strictly as the server checks it: each from the constant or the schema the check
uses, so that the two cannot drift apart.

Patterns are ECMA-262 (OpenAPI 3.1, JSON Schema 2020-12) in the subset every engine reads alike:
classes of `\\u` escape ranges (four hex digits), no Unicode property escapes. Where a rule is
Unicode categories (a text with something visible, a printable header), the pattern lists the
categories' ranges in the Basic Multilingual Plane, from the same Unicode database the server's
check uses.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

from aura.engine.config.inputs import STEP_NAMES
from aura.engine.config.saved_settings import (
    KEY_FIELD,
    MAX_KEY_CHARS,
    MAX_URL_CHARS,
    MIN_KEY_CHARS,
    URL_FIELD,
)
from aura.http.list_query import (
    CURSOR_PATTERN,
    DEFAULT_LIST_LIMIT,
    MAX_CURSOR_CHARS,
    MAX_DIGITS,
    MAX_LIST_LIMIT,
    MAX_OFFSET,
)
from aura.projections.job import JobStatus

__all__ = [
    "AT_PARAM",
    "BASE_URL_PATTERN",
    "LIST_PARAMS",
    "SEQ_PATTERN",
    "SESSION_BODY",
    "tighten",
]

_REF = "#/components/schemas/{name}"
#: an event seq in a query or header: digits, at most MAX_DIGITS of them
SEQ_PATTERN = f"^[0-9]{{1,{MAX_DIGITS}}}$"
#: the longest Idempotency-Key (http/routes_jobs.py)
MAX_IDEMPOTENCY_KEY_CHARS = 200

LIST_PARAMS: tuple[dict[str, Any], ...] = (
    {
        "name": "status",
        "in": "query",
        "schema": {"enum": [s.value for s in JobStatus]},
        "description": "only jobs of this status (a cursor carries it: repeat it or leave it out)",
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_LIST_LIMIT,
            "default": DEFAULT_LIST_LIMIT,
        },
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string", "pattern": CURSOR_PATTERN, "maxLength": MAX_CURSOR_CHARS},
        "description": "where the page starts: a nextCursor as given (preferred to offset: as "
        "fast deep in the list as on its first page); not with offset; one altered, or not "
        "of this server, is 400 InvalidInput:cursor",
    },
    {
        "name": "offset",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        "description": "rows to skip (kept for compatibility: each page costs more the deeper "
        "it is; prefer cursor); not with cursor",
    },
)

AT_PARAM: dict[str, Any] = {
    "name": "at",
    "in": "query",
    "schema": {"type": "string", "pattern": SEQ_PATTERN},
    "description": "the job as of this seq: its events up to it folded (etaSeconds null); "
    "before the job's first event: 400 InvalidInput:at",
}

SESSION_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["token"],
    "properties": {"token": {"type": "string"}},
    "additionalProperties": False,
}


def _class(categories: frozenset[str], keep: str = "") -> str:
    """A pattern class's ranges: the BMP's characters of the Unicode `categories` (surrogates
    aside: an engine reading UTF-16 sees each astral character as two), but those in `keep`."""
    ranges: list[tuple[int, int]] = []
    for cp in range(0x10000):
        char = chr(cp)
        if unicodedata.category(char) in categories and char not in keep:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\u{a:04X}" if a == b else f"\\u{a:04X}-\\u{b:04X}" for a, b in ranges)


@functools.cache
def _patterns() -> tuple[str, str, str]:
    """No control character; nothing but spaces and invisible characters; printable."""
    control = _class(frozenset({"Cc"}))
    invisible = _class(frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Co"}))
    unprintable = _class(frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Co"}), keep=" ")
    return f"^[^{control}]*$", f"^[{invisible}]*$", f"^[^{unprintable}]*$"


def _text(schema: dict[str, Any]) -> None:
    """A title or a script line (inputs._text_fault): no control character (a newline or tab
    included), and something visible besides spaces and invisible characters."""
    no_control, blank, _ = _patterns()
    schema["pattern"] = no_control
    schema["not"] = {"pattern": blank}
    schema["description"] = (
        "no control character (Unicode Cc, a newline or tab included), and something besides "
        "spaces and invisible characters (Unicode categories Z and C)"
    )


def _idempotency_key() -> dict[str, Any]:
    """The Idempotency-Key header (routes_jobs._idempotency_key)."""
    return {
        "type": "string",
        "maxLength": MAX_IDEMPOTENCY_KEY_CHARS,
        "pattern": _patterns()[2],
        "description": "printable text: no control, format or separator character (Unicode "
        "categories C and Z) but the space",
    }


def _ipv6() -> str:
    h = "[0-9A-Fa-f]{1,4}"
    forms = [f"({h}:){{7}}{h}", f"({h}:){{1,7}}:"]
    forms += [f"({h}:){{1,{7 - k}}}(:{h}){{1,{k}}}" for k in range(2, 6)]
    forms[2:2] = [f"({h}:){{1,6}}:{h}"]
    forms.append(f"{h}:(:{h}){{1,6}}")
    forms.append(f":((:{h}){{1,7}}|:)")
    return "|".join(forms)


#: a speech API's base URL (settings.base_url_fault): http or https, a host (a name of ASCII
#: letters, digits and `.-_~`, or an IPv6 address in brackets), a port up to 65535, a path; no
#: user or password, query or fragment
_PORT = "6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}"
BASE_URL_PATTERN = (
    f"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._~-]+|\\[({_ipv6()})\\])(:({_PORT}))?"
    "(/[^\\u0000-\\u0020\\u007F-\\u009F?#\\\\]*)?$"
)


def _string_member(schema: dict[str, Any], string: dict[str, Any]) -> None:
    """A `str | None` member: its string branch replaced by `string`."""
    schema["anyOf"] = [
        {"type": "string", **string} if branch.get("type") == "string" else branch
        for branch in schema["anyOf"]
    ]


def tighten(components: dict[str, Any]) -> None:
    """The components' schemas made as strict as the server's checks beyond the structs."""
    brief = components["Brief"]
    # validate_request: a brief given must have its script, and the default preset a brief
    brief["required"] = sorted({*brief.get("required", ()), "script"})
    brief["properties"]["script"].pop("default", None)
    _text(brief["properties"]["title"])
    _text(brief["properties"]["script"]["items"])
    request = components["JobRequest"]
    request["if"] = {"properties": {"preset": {"const": "default"}}, "required": ["preset"]}
    request["then"] = {
        "required": ["brief"],
        "properties": {"brief": {"$ref": _REF.format(name="Brief")}},
    }
    # validate_request: timeouts name steps, each with the bounds msgspec states for any key
    timeouts = components["Options"]["properties"]["timeouts"]
    seconds = timeouts["additionalProperties"]
    timeouts["properties"] = {step: dict(seconds) for step in STEP_NAMES}
    timeouts["additionalProperties"] = False
    # saved_settings.validated: a usable key; a usable base URL, saved only with its key
    update = components["SettingsUpdate"]
    members = update["properties"]
    key = {"minLength": MIN_KEY_CHARS, "maxLength": MAX_KEY_CHARS, "pattern": "^[!-~]*$"}
    _string_member(members[KEY_FIELD], key)
    _string_member(members[URL_FIELD], {"maxLength": MAX_URL_CHARS, "pattern": BASE_URL_PATTERN})
    update["if"] = {"properties": {URL_FIELD: {"type": "string"}}, "required": [URL_FIELD]}
    update["then"] = {"properties": {KEY_FIELD: {"type": "string"}}, "required": [KEY_FIELD]}
    components["IdempotencyKey"] = _idempotency_key()
