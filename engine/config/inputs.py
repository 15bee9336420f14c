"""What a job is asked to render: the preset, the brief and the options, validated.

The HTTP body and the CLI both decode into `JobRequest`; a bad field becomes
`InvalidInput:{FIELD}` naming the field as the client spelled it (camelCase path). Every JSON
body of the HTTP API is decoded through `decode_body`, which maps a body's failures (not UTF-8,
not JSON, nested too deeply, not of its type) to InvalidInput once for all.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from aura.engine.errors.taxonomy import AuraError

__all__ = [
    "PRESETS",
    "SAMPLE_BRIEF",
    "SAMPLE_PRESET",
    "STEP_NAMES",
    "Brief",
    "DecodeFailure",
    "JobRequest",
    "Options",
    "decode_body",
    "decode_request",
    "not_utf8",
    "too_deep",
    "validate_request",
]

STEP_NAMES: tuple[str, ...] = ("preflight", "narration", "broll", "subtitles", "mux")
SAMPLE_PRESET = "sample-hello-youtube"
PRESETS: tuple[str, ...] = (SAMPLE_PRESET, "default")

MAX_LINES = 20
MAX_LINE_CHARS = 300

#: a step's time limit in seconds
_Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]


class Request(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    """Base of request structs: camelCase, unknown fields refused."""


#: Python's `$` also matches before a final newline: validate_request checks the whole name
_VOICE = r"^[A-Za-z0-9+\-]{1,32}$"


class Brief(Request, frozen=True, kw_only=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=120)] = "Hello from Aura"
    #: required (validate_request): nothing is narrated that was not given
    script: Annotated[
        tuple[
            Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LINE_CHARS)],
            ...,
        ],
        msgspec.Meta(min_length=1, max_length=MAX_LINES),
    ] = ()
    aspect: Literal["16:9", "9:16"] = "16:9"
    #: an espeak-ng voice name (e.g. en-us, en-gb, de); letters, digits, '-', '+' only
    voice: Annotated[str, msgspec.Meta(pattern=_VOICE)] = "en-us"
    #: narration provider: espeak (offline, no key) or openai (OpenAI-compatible speech API)
    tts: Literal["espeak", "openai"] = "espeak"


class Options(Request, frozen=True, kw_only=True):
    quality: Literal["draft", "balanced", "high"] = "balanced"
    encoder: Literal["auto", "x264", "nvenc"] = "auto"
    subtitles: Literal["burned", "soft", "both"] = "both"
    #: per-step time limits in seconds, overriding the settings
    timeouts: dict[str, _Seconds] = {}


class JobRequest(Request, frozen=True, kw_only=True):
    preset: Literal["sample-hello-youtube", "default"] = "sample-hello-youtube"
    brief: Brief | None = None
    options: Options = Options()


#: The sample's built-in script: what `sample-hello-youtube` renders without a brief.
SAMPLE_BRIEF = Brief(
    title="Hello, YouTube!",
    script=(
        "Hello, and welcome to Aura.",
        "This video was rendered on your own machine, with no keys and no network.",
        "Every step you just watched was recorded as an event.",
        "Thanks for watching!",
    ),
)

_FIELD = re.compile(r"at `\$\.?([^`]*)`")
_DECODER = msgspec.json.Decoder(JobRequest)


def _bad_timeout(data: object) -> str:
    """The key msgspec's `options.timeouts[...]` stands for: the first value that is no timeout."""
    options = data.get("options") if isinstance(data, dict) else None
    timeouts = options.get("timeouts") if isinstance(options, dict) else None
    for step, value in timeouts.items() if isinstance(timeouts, dict) else ():
        try:
            msgspec.convert(value, _Seconds)
        except msgspec.ValidationError:
            return f"options.timeouts.{step}"
    return "options.timeouts"


#: the longest field name (as the client spelled it) an error code or message repeats
_MAX_FIELD_CHARS = 80
_FIELD_CHARS = re.compile(r"[^A-Za-z0-9_.+\-]")


def _field_code(name: str) -> str:
    """A client's field name fit for an error code: bounded, only plain characters (a name
    with control characters must not reach a terminal or a log line as they are)."""
    short = name[:_MAX_FIELD_CHARS] + ("..." if len(name) > _MAX_FIELD_CHARS else "")
    return _FIELD_CHARS.sub("?", short)


def _shown(text: str, limit: int = 400) -> str:
    """A message quoting client input: bounded, control characters escaped."""
    short = text[:limit] + ("..." if len(text) > limit else "")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in short)


def too_deep() -> AuraError:
    """The InvalidInput of a JSON body nested deeper than the decoder recurses."""
    return AuraError.of(
        "InvalidInput:body", "the body's JSON is nested too deeply", details={"field": "body"}
    )


def _invalid(error: msgspec.ValidationError | msgspec.DecodeError, data: object) -> AuraError:
    text = str(error)
    match = _FIELD.search(text)
    field = match.group(1) if match else "body"
    field = re.sub(r"\[\d+\]", "", field) or "body"
    if field == "options.timeouts[...]":
        field = _bad_timeout(data)
    if text.startswith("Object contains unknown field"):
        unknown = re.search(r"field `([^`]*)`", text)
        if unknown:
            field = f"{field}.{unknown.group(1)}" if match and match.group(1) else unknown.group(1)
    field = _field_code(field)
    return AuraError.of(f"InvalidInput:{field}", _shown(text), details={"field": field})


def not_utf8(error: UnicodeDecodeError, field: str = "body") -> AuraError:
    """The InvalidInput of a JSON body that is not UTF-8 (which JSON must be)."""
    return AuraError.of(
        f"InvalidInput:{field}",
        f"the body is not UTF-8 JSON: {error.reason} at byte {error.start}",
        details={"field": field},
    )


_T = TypeVar("_T")
#: what a JSON body failed on: its syntax (DecodeError) or its type (ValidationError)
DecodeFailure = msgspec.DecodeError | msgspec.ValidationError


def decode_body(
    body: bytes,
    decode: Callable[[bytes], _T],
    invalid: Callable[[DecodeFailure], AuraError],
    field: str = "body",
) -> _T:
    """`decode(body)`, a JSON body's failures raised as InvalidInput: bytes that are not UTF-8
    (`InvalidInput:{field}`), nesting past the decoder's depth (`InvalidInput:body`), and text
    that is no JSON or not of the type decoded (`invalid(error)`, which names the field)."""
    try:
        return decode(body)
    except UnicodeDecodeError as e:  # how msgspec reports a string that is not UTF-8
        raise not_utf8(e, field) from e
    except RecursionError:  # [[[[... past the decoder's depth (an untyped decode only)
        raise too_deep() from None
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise invalid(e) from e


def decode_request(body: bytes) -> JobRequest:
    """Decode and validate a JSON job request; raises AuraError(InvalidInput:{FIELD})."""
    if not body.strip():
        return validate_request(JobRequest())
    request = decode_body(body, _DECODER.decode, lambda e: _invalid(e, _parsed(body)))
    return validate_request(request)


def _parsed(body: bytes) -> object:
    """The body as plain JSON, to name the field at fault; None if it is no JSON at all."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        pass
    try:  # json reads a number out of a double's range (1e400) as inf, where msgspec refuses
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _text_fault(text: str) -> str | None:
    """Why a title or script line cannot be rendered, or None.

    A control character goes into argv and files C tools read (espeak-ng 1.51 crashes on
    U+0001); a text of spaces and invisible characters only renders silence and an empty cue.
    """
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"it holds the control character U+{ord(char):04X}"
    if all(unicodedata.category(char)[0] in "ZC" for char in text):
        return "it has nothing besides spaces and invisible characters"
    return None


def _check_texts(brief: Brief) -> None:
    fields = [("brief.title", brief.title)]
    fields += [(f"brief.script[{i}]", line) for i, line in enumerate(brief.script)]
    for field, text in fields:
        fault = _text_fault(text)
        if fault is not None:
            raise AuraError.of(
                f"InvalidInput:{field}",
                f"{field} cannot be rendered: {fault}",
                details={"field": field},
            )


def validate_request(request: JobRequest) -> JobRequest:
    """Checks msgspec cannot express: the default preset needs a brief, a brief its script
    and texts that render; timeouts name steps."""
    if request.preset == "default" and request.brief is None:
        raise AuraError.of(
            "InvalidInput:brief",
            "the 'default' preset renders a brief: give one (title, script, aspect, voice)",
            details={"field": "brief"},
        )
    if request.brief is not None and not request.brief.script:  # a brief given is rendered
        raise AuraError.of(
            "InvalidInput:brief.script",
            "the brief has no script: give the lines to narrate (1 to 20)",
            details={"field": "brief.script"},
        )
    if request.brief is not None:
        _check_texts(request.brief)
        if re.fullmatch(_VOICE[1:-1], request.brief.voice) is None:
            raise AuraError.of(
                "InvalidInput:brief.voice",
                "brief.voice must be 1 to 32 letters, digits, '-' or '+' (e.g. en-us)",
                details={"field": "brief.voice"},
            )
    for step in request.options.timeouts:
        if step not in STEP_NAMES:
            field = f"options.timeouts.{_field_code(step)}"
            raise AuraError.of(
                f"InvalidInput:{field}",
                _shown(f"unknown step {step!r}; steps are {', '.join(STEP_NAMES)}"),
                details={"field": field},
            )
    return request


def convert_request(data: dict[str, Any]) -> JobRequest:
    """A JobRequest from already-parsed JSON (e.g. a stored JobCreated's brief and options)."""
    try:
        request = msgspec.convert(data, JobRequest)
    except msgspec.ValidationError as e:
        raise _invalid(e, data) from e
    return validate_request(request)
