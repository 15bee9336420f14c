"""Narration through an OpenAI-compatible /v1/audio/speech served by a small local server."""

from __future__ import annotations

import io
import math
import struct
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from render_helpers import leftovers, make_ctx, settings_for

from aura.engine.config.inputs import Brief
from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import map_exception
from aura.engine.errors.taxonomy import AuraError
from aura.engine.steps.narration import narration
from aura.engine.tools import openai_tts
from aura.engine.tools.media import probe_duration

KEY = "sk-test-0123456789abcdefXYZ"
ServerFactory = Callable[..., Awaitable[TestServer]]


def tone_wav(seconds: float = 0.4, rate: int = 24_000) -> bytes:
    """A short sine tone as 16-bit mono WAV, like the endpoint's `response_format: wav`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = (
            int(8000 * math.sin(i / rate * 2 * math.pi * 440)) for i in range(int(seconds * rate))
        )
        w.writeframes(b"".join(struct.pack("<h", f) for f in frames))
    return buffer.getvalue()


class Speech:
    """The fake endpoint: answers with the planned statuses in turn, then with audio."""

    def __init__(self, plan: list[int] | None = None, body: bytes | None = None) -> None:
        self.plan = list(plan or [])
        self.body = tone_wav() if body is None else body
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("Authorization", ""), await request.json()))
        status = self.plan.pop(0) if self.plan else 200
        if status != 200:
            return web.json_response({"error": {"message": "try later"}}, status=status)
        return web.Response(body=self.body, content_type="audio/wav")


async def serve(aiohttp_server: ServerFactory, speech: Speech, tmp_path: Path) -> Settings:
    app = web.Application()
    app.router.add_post("/v1/audio/speech", speech.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}/v1"
    settings: Settings = settings_for(tmp_path, openai_api_key=KEY, openai_base_url=base)
    return settings


async def test_narration_speaks_each_line_through_the_endpoint(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech()
    settings = await serve(aiohttp_server, speech, tmp_path)
    brief = Brief(title="t", script=("First.", "Second."), tts="openai", voice="nova")
    ctx = make_ctx(settings, "narration", brief=brief)
    ctx.work_dir.mkdir(parents=True)
    artifacts = {a.name: a for a in await narration(ctx)}
    assert set(artifacts) == {"line-01", "line-02", "narration"}
    auth, body = speech.requests[0]
    assert auth == f"Bearer {KEY}"
    assert body == {"model": "tts-1", "input": "First.", "voice": "nova", "response_format": "wav"}
    assert [b["input"] for _, b in speech.requests] == ["First.", "Second."]
    total = await probe_duration(Path(artifacts["narration"].path), settings)
    assert total == pytest.approx(2 * (0.4 + 0.3), abs=0.05)
    assert leftovers(tmp_path) == []


async def test_an_espeak_voice_name_maps_to_a_default_voice(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech()
    settings = await serve(aiohttp_server, speech, tmp_path)
    await openai_tts.request_speech("hi", "en-us", settings)
    assert speech.requests[0][1]["voice"] == openai_tts.OPENAI_VOICES[0]


async def test_busy_answers_are_retried_with_backoff(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[503, 429])
    settings = await serve(aiohttp_server, speech, tmp_path)
    audio = await openai_tts.request_speech("hi", "alloy", settings)
    assert audio == speech.body
    assert len(speech.requests) == 3


async def test_a_server_that_keeps_failing_is_transient_network_failure(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[500] * openai_tts.ATTEMPTS)
    settings = await serve(aiohttp_server, speech, tmp_path)
    with pytest.raises(AuraError) as caught:
        await openai_tts.request_speech("hi", "alloy", settings)
    info = map_exception(caught.value, step="narration", correlation_id="c", settings=settings)
    assert info.code == "TransientNetworkFailure"
    assert len(speech.requests) == openai_tts.ATTEMPTS
    assert KEY not in str(info)


async def test_a_refused_key_is_reported_as_the_key_without_retrying(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[401])
    settings = await serve(aiohttp_server, speech, tmp_path)
    with pytest.raises(AuraError) as caught:
        await openai_tts.request_speech("hi", "alloy", settings)
    assert caught.value.code == "MissingApiKey:OPENAI_API_KEY"
    assert "refused" in caught.value.info.message
    assert len(speech.requests) == 1
    assert KEY not in str(caught.value.info)


async def test_a_base_url_with_a_password_is_refused_without_showing_it(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        openai_api_key=KEY,
        openai_base_url="http://alice:hunter2pass@127.0.0.1:9/v1",
    )
    with pytest.raises(AuraError) as caught:
        await openai_tts.request_speech("hi", "alloy", settings)
    assert caught.value.code == "InvalidInput:AURA_OPENAI_BASE_URL"
    assert "hunter2pass" not in str(caught.value.info) and KEY not in str(caught.value.info)


@pytest.mark.parametrize(
    "base",
    [
        "user:pwSECRETPW@api.example.invalid/v1",  # no scheme: it used to reach aiohttp
        "api.example.invalid/v1",
        "ftp://api.example.invalid/v1",
        "https://api.example.invalid/v1?key=pwSECRETPW",
        "https://api.example.invalid/v1?",  # an empty query would take the request's path
        "https://api.example.invalid/v1#",
    ],
)
async def test_a_base_url_that_is_no_plain_http_url_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    settings = Settings(data_dir=tmp_path, openai_api_key=KEY, openai_base_url=base)
    with pytest.raises(AuraError) as caught:
        await openai_tts.request_speech("hi", "alloy", settings)
    assert caught.value.code == "InvalidInput:AURA_OPENAI_BASE_URL"
    assert "SECRET" not in str(caught.value.info) and KEY not in str(caught.value.info)
    assert "SECRET" not in settings.openai_base_url_shown  # and showing it does not raise
    monkeypatch.setenv("AURA_OPENAI_BASE_URL", base)
    with pytest.raises(AuraError) as caught:  # serve, sample and doctor refuse to start
        Settings.from_env(data_dir=tmp_path)
    assert caught.value.code == "InvalidInput:AURA_OPENAI_BASE_URL"
    assert "SECRET" not in str(caught.value.info)


async def test_no_key_fails_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(AuraError) as caught:
        await openai_tts.request_speech("hi", "alloy", settings_for(tmp_path))
    assert caught.value.code == "MissingApiKey:OPENAI_API_KEY"


async def test_an_empty_answer_leaves_no_file(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(body=b"")
    settings = await serve(aiohttp_server, speech, tmp_path)
    target = tmp_path / "line.wav"
    with pytest.raises(Exception) as caught:
        await openai_tts.synthesize_to_file("hi", "alloy", target, settings)
    assert map_exception(caught.value, step="narration").code == "Internal"
    assert not target.exists()
    assert leftovers(tmp_path) == []
