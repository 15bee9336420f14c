"""Narration through an OpenAI-compatible speech endpoint (`POST {base}/audio/speech`).

The base URL and key come from the settings (`AURA_OPENAI_BASE_URL`, `OPENAI_API_KEY`). A
missing key is `MissingApiKey:OPENAI_API_KEY` (preflight catches it first); connection failures,
timeouts, 429 and 5xx answers are retried with exponential backoff, then become
`TransientNetworkFailure`. The key never appears in an error: only the variable's name does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from aura.engine.config.settings import Settings, bad_base_url, base_url_fault
from aura.engine.errors.taxonomy import AuraError
from aura.engine.files import atomic
from aura.engine.tools.media import accept_media

__all__ = ["KEY_NAME", "OPENAI_VOICES", "request_speech", "synthesize_to_file"]

KEY_NAME = "OPENAI_API_KEY"
#: the endpoint's voices; any other brief voice (an espeak name like en-us) maps to the first
OPENAI_VOICES = ("alloy", "echo", "fable", "onyx", "nova", "shimmer")
#: attempts in all, and the first backoff in seconds (doubled each time)
ATTEMPTS = 4
BACKOFF_SECONDS = 0.2
REQUEST_TIMEOUT_SECONDS = 60.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    """One attempt failed in a way worth trying again."""


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
                raise _Retryable(f"HTTP {response.status}")
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


async def request_speech(text: str, voice: str, settings: Settings) -> bytes:
    """The WAV bytes of `text` spoken by the endpoint, retrying transient failures."""
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
    last = ""
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            try:
                return await _attempt(session, url, payload)
            except _Retryable as e:
                last = str(e)
    raise AuraError.of(
        "TransientNetworkFailure",
        f"the speech endpoint failed {ATTEMPTS} times; last: {last}",
        details={
            "attempts": ATTEMPTS,
            "baseUrl": settings.openai_base_url_shown,
        },
    )


async def synthesize_to_file(text: str, voice: str, path: Path, settings: Settings) -> None:
    """Speak `text` into the WAV `path`, atomically and only if ffprobe reads it as audio."""
    audio = await request_speech(text, voice, settings)
    async with atomic.produce(path, accept=accept_media(settings, needs=("audio",))) as temp:
        await asyncio.to_thread(temp.write_bytes, audio)
