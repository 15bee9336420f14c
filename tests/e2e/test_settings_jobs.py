"""Saved settings reach the jobs: a job that failed for want of a key succeeds when retried after
the key is saved from the page (real render, real speech stand-in on 127.0.0.1), and the CLI
commands use (or refuse) the saved settings as the server does."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import struct
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aura.engine.config.saved_settings import SETTINGS_FILE, SavedSettings, write_saved
from aura.engine.run.pipeline import PIPELINE
from aura.tests.e2e.helpers import follow, log_lines

GOOD_KEY = "plainGoodKey0123456789"
WRONG_KEY = "plainWrongKey987654321"
BRIEF = {"title": "Settings test", "script": ["One short line."], "tts": "openai", "voice": "nova"}
BODY = {"preset": "default", "brief": BRIEF, "options": {"quality": "draft", "encoder": "x264"}}
AURA = [sys.executable, "-m", "aura.cli.main"]


def tone_wav(seconds: float = 0.4, rate: int = 24_000) -> bytes:
    """A short sine tone as 16-bit mono WAV, as the endpoint's `response_format: wav`."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(i / rate * 2 * math.pi * 440)))
                for i in range(int(seconds * rate))
            )
        )
    return buffer.getvalue()


class Speech:
    """The speech API stand-in: audio for GOOD_KEY, 401 for any other bearer token."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.audio = tone_wav()

    async def handle(self, request: web.Request) -> web.Response:
        self.tokens.append(request.headers.get("Authorization", ""))
        await request.read()
        if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return web.Response(body=self.audio, content_type="audio/wav")


async def answer(texts: list[str], resp: Any, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, text
    texts.append(text)
    body: dict[str, Any] = json.loads(text)
    return body


@pytest.mark.slow
async def test_a_job_missing_its_key_succeeds_when_retried_after_the_key_is_saved(
    make_client: Any, aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    speech = Speech()
    stand_in = web.Application()
    stand_in.router.add_post("/v1/audio/speech", speech.handle)
    base_url = f"http://127.0.0.1:{(await aiohttp_server(stand_in, host='127.0.0.1')).port}/v1"
    client = await make_client(pipeline=PIPELINE)  # real steps, real ffmpeg; no key anywhere
    texts: list[str] = []
    job = await answer(texts, await client.post("/api/jobs", json=BODY), 201)
    job_id = job["jobId"]

    events = await follow(client, job_id)
    assert events[-1].event == "job-failed"
    error = events[-1].data["error"]
    assert (error["code"], error["step"]) == ("MissingApiKey:OPENAI_API_KEY", "preflight")
    assert speech.tokens == []

    # a key the endpoint refuses: the retry gets past preflight and fails at narration
    put = {"openaiApiKey": WRONG_KEY, "openaiBaseUrl": base_url}
    await answer(texts, await client.put("/api/settings", json=put), 200)
    retried = await answer(texts, await client.post(f"/api/jobs/{job_id}/retry"), 202)
    assert (retried["jobId"], retried["attempt"]) == (job_id, 2)  # the same job, continued
    events += await follow(client, job_id, after=events[-1].id)
    assert events[-1].event == "job-failed"
    error = events[-1].data["error"]
    assert (error["code"], error["step"]) == ("MissingApiKey:OPENAI_API_KEY", "narration")
    assert "refused" in error["message"]
    assert speech.tokens == [f"Bearer {WRONG_KEY}"]

    # a new key names the URL it is for (a saved URL is used only with the key saved with it)
    put = {"openaiApiKey": GOOD_KEY, "openaiBaseUrl": base_url}
    saved = await answer(texts, await client.put("/api/settings", json=put), 200)
    assert saved["openaiApiKey"] == {"configured": True, "source": "settings"}
    retried = await answer(texts, await client.post(f"/api/jobs/{job_id}/retry"), 202)
    assert retried["attempt"] == 3
    events += await follow(client, job_id, after=events[-1].id)
    assert events[-1].event == "job-completed", events[-1]
    assert speech.tokens[1:] == [f"Bearer {GOOD_KEY}"]  # one line, spoken with the saved key

    lines = await log_lines(client, job_id)
    third = [line for line in lines if line["attempt"] == 3 and line["type"].startswith("Step")]
    # preflight makes no artifact and narration had failed: the retry runs them again, and the
    # steps after them for the first time (a retry reuses only steps with artifacts)
    assert [line["step"] for line in third if line["type"] == "StepStarted"] == list(PIPELINE)
    assert [line["step"] for line in third if line["type"] == "StepSucceeded"] == list(PIPELINE)
    assert not [line for line in third if line["type"] in ("StepSkipped", "StepFailed")]
    video = await client.get(f"/api/jobs/{job_id}/output")
    assert video.status == 200 and (await video.read())[4:8] == b"ftyp"

    # the keys appear in no answer, event, log line, diagnostics or system check
    for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/log", "/api/settings"):
        texts.append(await (await client.get(path)).text())
    texts.append(await (await client.get(f"/api/jobs/{job_id}/diagnostics")).text())
    check = await answer(texts, await client.get("/api/system-check"), 200)
    [key] = [f for f in check["findings"] if f["check"] == "key:OPENAI_API_KEY"]
    assert key["status"] == "ok"
    texts += [json.dumps(e.data) for e in events]
    texts += [record.getMessage() for record in caplog.records]
    assert [t for t in texts if GOOD_KEY in t or WRONG_KEY in t] == []


def aura(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURA_")}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run([*AURA, *args], capture_output=True, text=True, timeout=120, env=env)


def doctor_key(data_dir: Path) -> dict[str, Any]:
    result = aura("doctor", "--json", "--data-dir", str(data_dir))
    assert GOOD_KEY not in result.stdout + result.stderr
    [key] = [f for f in json.loads(result.stdout) if f["check"] == "key:OPENAI_API_KEY"]
    return dict(key)


def test_doctor_sees_the_saved_key(tmp_path: Path) -> None:
    assert doctor_key(tmp_path)["status"] == "warning"
    write_saved(tmp_path, SavedSettings(openai_api_key=GOOD_KEY))
    assert doctor_key(tmp_path)["status"] == "ok"


@pytest.mark.parametrize(("command", "status"), [("doctor", 2), ("serve", 1), ("sample", 1)])
def test_an_unreadable_settings_file_is_a_message_naming_it(
    tmp_path: Path, command: str, status: int
) -> None:
    path = tmp_path / SETTINGS_FILE
    path.write_text(json.dumps({"openaiApiKey": f"{GOOD_KEY} with spaces"}))
    extra = ["--port", "0"] if command == "serve" else []
    result = aura(command, "--data-dir", str(tmp_path), *extra)
    assert result.returncode == status, result.stderr
    assert f"aura {command}: SettingsUnreadable" in result.stderr
    assert str(path) in result.stderr and "openaiApiKey" in result.stderr
    assert "Traceback" not in result.stderr and GOOD_KEY not in result.stdout + result.stderr
