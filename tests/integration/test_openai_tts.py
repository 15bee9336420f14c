"""Narration through an OpenAI-compatible /v1/audio/speech served by a small local server."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math
import struct
import wave
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from render_helpers import leftovers, make_ctx, settings_for
from runner_support import pipeline

from aura.engine.config.inputs import Brief, JobRequest, Options
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.mapping import map_exception
from aura.engine.errors.taxonomy import AuraError
from aura.engine.steps.narration import narration
from aura.engine.tools import openai_tts
from aura.engine.tools.media import probe_duration
from aura.projections.job import JobStatus

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
    """The fake endpoint: answers with the planned statuses in turn (each maybe with a
    Retry-After), then with audio."""

    def __init__(
        self, plan: list[int | tuple[int, str]] | None = None, body: bytes | None = None
    ) -> None:
        self.plan = list(plan or [])
        self.body = tone_wav() if body is None else body
        self.requests: list[tuple[str, dict[str, Any]]] = []
        #: the loop's time of each request
        self.times: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(asyncio.get_running_loop().time())
        self.requests.append((request.headers.get("Authorization", ""), await request.json()))
        planned = self.plan.pop(0) if self.plan else 200
        status, retry_after = planned if isinstance(planned, tuple) else (planned, None)
        if status != 200:
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            body = {"error": {"message": "try later"}}
            return web.json_response(body, status=status, headers=headers)
        return web.Response(body=self.body, content_type="audio/wav")


class Sleeps:
    """The waits between attempts, recorded instead of slept (the server still answers)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


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
    sleeps = Sleeps()
    audio = await openai_tts.request_speech("hi", "alloy", settings, sleep=sleeps)
    assert audio == speech.body
    assert len(speech.requests) == 3
    assert sleeps.waits == [openai_tts.BACKOFF_SECONDS, 2 * openai_tts.BACKOFF_SECONDS]


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("1", 1.0, 1.0),
        ("7", 7.0, 7.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0, 0.0),  # in the past: at once
        ("86400", openai_tts.RETRY_AFTER_CAP, openai_tts.RETRY_AFTER_CAP),  # capped
        ("9" * 5000, openai_tts.RETRY_AFTER_CAP, openai_tts.RETRY_AFTER_CAP),
        ("soon", openai_tts.BACKOFF_SECONDS, openai_tts.BACKOFF_SECONDS),  # unreadable: backoff
        ("-5", openai_tts.BACKOFF_SECONDS, openai_tts.BACKOFF_SECONDS),
    ],
)
async def test_a_rate_limit_is_waited_out_as_its_retry_after_says(
    aiohttp_server: ServerFactory,
    tmp_path: Path,
    retry_after: str,
    low: float,
    high: float,
) -> None:
    speech = Speech(plan=[(429, retry_after)])
    settings = await serve(aiohttp_server, speech, tmp_path)
    sleeps = Sleeps()
    audio = await openai_tts.request_speech("hi", "alloy", settings, sleep=sleeps)
    assert audio == speech.body and len(speech.requests) == 2
    [wait] = sleeps.waits
    assert low <= wait <= high


async def test_a_retry_after_date_is_waited_until(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[(503, http_date(5))])
    settings = await serve(aiohttp_server, speech, tmp_path)
    sleeps = Sleeps()
    assert await openai_tts.request_speech("hi", "alloy", settings, sleep=sleeps) == speech.body
    [wait] = sleeps.waits
    assert 3.0 <= wait <= 5.0  # whole seconds, and a loaded machine's delay


async def test_the_retry_after_is_slept_for_real(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[(429, "1")])
    settings = await serve(aiohttp_server, speech, tmp_path)
    assert await openai_tts.request_speech("hi", "alloy", settings) == speech.body
    # the backoff alone would have come back after 0.2 s
    assert speech.times[1] - speech.times[0] >= 0.95


async def test_a_retry_after_past_the_steps_time_left_fails_at_once(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[(429, "30")])
    settings = await serve(aiohttp_server, speech, tmp_path)
    sleeps = Sleeps()
    deadline = asyncio.get_running_loop().time() + 10
    with pytest.raises(AuraError) as caught:
        await openai_tts.request_speech("hi", "a", settings, deadline=deadline, sleep=sleeps)
    assert caught.value.code == "TransientNetworkFailure"
    assert "asked to wait 30 s" in caught.value.info.message
    assert "HTTP 429" in caught.value.info.message
    assert caught.value.info.details["retryAfterSeconds"] == 30.0
    assert sleeps.waits == [] and len(speech.requests) == 1
    # with time enough left it is waited out
    speech.plan = [(429, "3")]
    await openai_tts.request_speech("hi", "a", settings, deadline=deadline, sleep=sleeps)
    assert sleeps.waits == [3.0]


async def test_narration_gives_its_steps_time_left_to_the_speech_call(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[(429, "600")])
    settings = await serve(aiohttp_server, speech, tmp_path)
    brief = Brief(title="t", script=("First.",), tts="openai", voice="nova")
    ctx = make_ctx(settings, "narration", brief=brief)
    ctx.work_dir.mkdir(parents=True)
    deadline = asyncio.get_running_loop().time() + 300
    with pytest.raises(AuraError) as caught:
        await narration(dataclasses.replace(ctx, deadline=deadline))
    assert caught.value.code == "TransientNetworkFailure"
    assert "more than the step has left" in caught.value.info.message
    assert leftovers(tmp_path) == []


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
        "https://][@",  # yarl raises IndexError on this authority
        "http://xn--",  # and UnicodeError reading this host
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


async def test_a_job_fails_at_once_when_the_provider_asks_to_wait_past_the_steps_limit(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    speech = Speech(plan=[(429, "600")])
    settings = await serve(aiohttp_server, speech, tmp_path)
    brief = Brief(title="t", script=("First.",), tts="openai", voice="nova")
    request = JobRequest(preset="default", brief=brief, options=Options(timeouts={"narration": 5}))
    async with await Engine.open(settings, pipeline=pipeline(narration=narration)) as engine:
        job_id = (await engine.submit(request)).job.job_id
        await engine.run_until_idle()
        state = await engine.get(job_id)
    assert state.status is JobStatus.FAILED
    [error] = state.errors
    assert error.code == "TransientNetworkFailure", error  # not StepTimeout after 5 s
    assert "more than the step has left" in error.message
