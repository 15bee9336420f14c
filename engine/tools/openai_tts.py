"""Narration through an OpenAI-compatible speech endpoint (`POST {base}/audio/speech`).

The base URL and key come from the settings (`AURA_OPENAI_BASE_URL`, `OPENAI_API_KEY`). A
missing key is `MissingApiKey:OPENAI_API_KEY` (preflight catches it first); connection failures,
timeouts, 429 and 5xx answers are retried with exponential backoff, then become
`TransientNetworkFailure`. An answer's Retry-After says how long to wait instead (at most
RETRY_AFTER_CAP seconds); one asking for more than the step has left fails the call at once.
The key never appears in an error: only the variable's name does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from aura.engine.config.settings import Settings, bad_base_url, base_url_fault
from aura.engine.errors.taxonomy import AuraError
from aura.engine.files import atomic
from aura.engine.tools.media import accept_media
from aura.engine.tools.retry_after import retry_after

__all__ = ["KEY_NAME", "OPENAI_VOICES", "request_speech", "synthesize_to_file"]

KEY_NAME = "OPENAI_API_KEY"
#: the endpoint's voices; any other brief voice (an espeak name like en-us) maps to the first
OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
#: attempts in all, and the first backoff in seconds (doubled each time)
ATTEMPTS = 4
BACKOFF_SECONDS = 0.2
REQUEST_TIMEOUT_SECONDS = 60.0
#: the longest wait an answer's Retry-After gets (a silly or hostile value must not stall a job)
RETRY_AFTER_CAP = 60.0
#: a longer Retry-After is read as this (it is compared with the step's time left, then capped)
_RETRY_AFTER_READ_UP_TO = 86_400.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

Sleep = Callable[[float], Awaitable[None]]


class _Retryable(Exception):
    """One attempt failed in a way worth trying again (`wait`: the seconds its answer's
    Retry-After asked for, uncapped; None without one)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


def _voice(voice: str) -> str:
    return voice if voice in OPENAI_VOICES else OPENAI_VOICES[0]


def _key(settings: Settings) -> str:
    if not settings.openai_api_key:
        raise AuraError.of(
            f"MissingApiKey:{KEY_NAME}", f"narration with tts 'openai' needs {KEY_NAME}"
        )
    return settings.openai_api_key


async def _attempt(session: aiohttp.ClientSession, url: str, payload: dict[str, str]) -> bytes:
    try:
        async with session.post(url, json=payload) as response:
            if response.status in _RETRY_STATUSES:
                asked = retry_after(response.headers.get("Retry-After"), _RETRY_AFTER_READ_UP_TO)
                raise _Retryable(f"HTTP {response.status}", asked)
            if response.status in (401, 403):
                raise AuraError.of(
                    f"MissingApiKey:{KEY_NAME}",
                    f"the speech endpoint refused the key (HTTP {response.status})",
                    remediation=f"Check that {KEY_NAME} is a valid key for this endpoint.",
                    details={"status": response.status},
                )
            if response.status >= 400:
                raise AuraError.of(
                    "Internal",
                    f"the speech endpoint answered HTTP {response.status}",
                    details={"status": response.status, "body": (await response.text())[:300]},
                )
            return await response.read()
    except (aiohttp.ClientConnectionError, TimeoutError) as e:
        raise _Retryable(f"{type(e).__name__}: {e}") from e


async def request_speech(
    text: str,
    voice: str,
    settings: Settings,
    *,
    deadline: float | None = None,
    sleep: Sleep = asyncio.sleep,
) -> bytes:
    """The WAV bytes of `text` spoken by the endpoint, retrying transient failures.

    :param deadline: the event loop's time at which the step's limit ends (None: no limit); a
        Retry-After asking to wait past it fails the call at once
    :param sleep: waits between attempts
    """
    key = _key(settings)
    fault = base_url_fault(settings.openai_base_url)
    if fault is not None:
        raise bad_base_url(fault)
    url = settings.openai_base_url.rstrip("/") + "/audio/speech"
    payload = {
        "model": settings.openai_tts_model,
        "input": text,
        "voice": _voice(voice),
        "response_format": "wav",
    }
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    last = _Retryable("")
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        for attempt in range(ATTEMPTS):
            if attempt:
                await sleep(_wait(last, attempt, deadline, settings))
            try:
                return await _attempt(session, url, payload)
            except _Retryable as e:
                last = e
    raise _gave_up(f"the speech endpoint failed {ATTEMPTS} times; last: {last}", ATTEMPTS, settings)


def _wait(last: _Retryable, attempt: int, deadline: float | None, settings: Settings) -> float:
    """Seconds to wait before `attempt` (1, 2, ...): what the last answer's Retry-After asked
    (at most RETRY_AFTER_CAP), else the backoff. Raises when it asked to wait past `deadline`."""
    if last.wait is None:
        return float(BACKOFF_SECONDS * 2 ** (attempt - 1))
    if deadline is not None:
        left = deadline - asyncio.get_running_loop().time()
        if last.wait >= left:
            raise _gave_up(
                f"the speech endpoint asked to wait {last.wait:.0f} s before trying again "
                f"({last}), more than the step has left ({max(left, 0.0):.0f} s)",
                attempt,
                settings,
                retryAfterSeconds=last.wait,
            )
    return min(last.wait, RETRY_AFTER_CAP)


def _gave_up(message: str, attempts: int, settings: Settings, **details: object) -> AuraError:
    return AuraError.of(
        "TransientNetworkFailure",
        message,
        details={"attempts": attempts, "baseUrl": settings.openai_base_url_shown, **details},
    )


async def synthesize_to_file(
    text: str, voice: str, path: Path, settings: Settings, *, deadline: float | None = None
) -> None:
    """Speak `text` into the WAV `path`, atomically and only if ffprobe reads it as audio
    (`deadline`: as for `request_speech`)."""
    audio = await request_speech(text, voice, settings, deadline=deadline)
    async with atomic.produce(path, accept=accept_media(settings, needs=("audio",))) as temp:
        await asyncio.to_thread(temp.write_bytes, audio)
