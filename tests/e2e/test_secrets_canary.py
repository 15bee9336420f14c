"""No secret leaks: distinctive canaries for every secret a real `aura serve` holds (the speech
API key from the environment, the key saved from the page, the access token) run through a
successful job, a job that fails calling the provider (a local stand-in answering 500 then 401,
and later quoting the key it was sent, as some providers do), a canceled job and a retried one;
then neither canary is in any event, log line, answer, diagnostics bundle, `aura replay` output
or file of the data folder, but the saved key in the settings file (owner-only).

The canaries do not look like keys (no `sk-`, no `Bearer`): only redaction by value can catch
them, as it must catch a provider's key of any shape.
"""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aura.engine.config.saved_settings import SETTINGS_FILE
from aura.engine.errors.redaction import REDACTED
from aura.tests.e2e.raw_http import AURA, Served, aura_serve, clean_env
from aura.tests.integration.test_openai_tts import Speech

ENV_KEY = f"EnvKeyCanary{uuid.uuid4().hex}"
SAVED_KEY = f"SavedKeyCanary{uuid.uuid4().hex}"
TOKEN = f"TokenCanary{uuid.uuid4().hex}"
CANARIES = (ENV_KEY, SAVED_KEY, TOKEN)
#: seconds a job of the test has to end (a short draft render on a loaded machine)
JOB_TIMEOUT = 180.0
DRAFT = {"quality": "draft", "encoder": "x264"}
SAMPLE = {"preset": "sample-hello-youtube", "options": DRAFT}
SPOKEN = {
    "preset": "default",
    "brief": {"title": "Spoken", "script": ["One line, spoken by the provider."], "tts": "openai"},
    "options": DRAFT,
}
ServerFactory = Callable[..., Awaitable[TestServer]]


class EchoingSpeech(Speech):
    """The stand-in speech API, whose refusals quote the key they were sent."""

    async def handle(self, request: web.Request) -> web.Response:
        response = await super().handle(request)
        if response.status >= 400:
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            response.text = json.dumps({"error": {"message": f"Incorrect key provided: {key}"}})
        return response


class Recording:
    """A client of the server with the token, keeping every answer it got (status line,
    headers, body) as bytes to search."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        #: (what was asked, what was answered)
        self.answers: list[tuple[str, bytes]] = []

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        async with self.session.request(method, self.base + path, **kwargs) as answer:
            body = await answer.read()
        head = [
            f"{answer.status} {answer.reason}",
            *(f"{k}: {v}" for k, v in answer.headers.items()),
        ]
        self.answers.append((f"{method} {path}", "\n".join(head).encode() + b"\n\n" + body))
        return answer.status, body

    async def json(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        got, body = await self.call(method, path, **kwargs)
        assert got == status, (method, path, got, body[:500])
        return json.loads(body)

    async def submit(self, request: dict[str, Any]) -> str:
        job_id: str = (await self.json("POST", "/api/jobs", 201, json=request))["jobId"]
        return job_id

    async def wait_status(self, job_id: str, wanted: set[str]) -> dict[str, Any]:
        """The job once its status is one of `wanted` (asserting it gets there in time)."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            job: dict[str, Any] = await self.json("GET", f"/api/jobs/{job_id}")
            if job["status"] in wanted:
                return job
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} is not {wanted} after {JOB_TIMEOUT} s: {job}")


@pytest.fixture
async def speech(aiohttp_server: ServerFactory) -> AsyncIterator[tuple[EchoingSpeech, str]]:
    """The stand-in and its base URL: 500 then 401 (the environment's key), 500 then a 400
    quoting the key (the saved key), then audio."""
    stand_in = EchoingSpeech(plan=[500, 401, 500, 400])
    app = web.Application()
    app.router.add_post("/{prefix}/v1/audio/speech", stand_in.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield stand_in, f"http://127.0.0.1:{server.port}"


async def run_jobs(api: Recording, speech_base: str) -> list[str]:
    """A successful, a canceled and a failed job, the failed one retried twice (with the key
    saved meanwhile) until it succeeds; their ids."""
    succeeded = await api.submit(SAMPLE)
    assert (await api.wait_status(succeeded, {"Succeeded", "Failed"}))["status"] == "Succeeded"
    canceled = await api.submit(SAMPLE)
    await api.wait_status(canceled, {"Running"})
    await api.json("POST", f"/api/jobs/{canceled}/cancel", 202)
    await api.wait_status(canceled, {"Canceled"})
    spoken = await api.submit(SPOKEN)  # the environment's key: 500, then 401
    job = await api.wait_status(spoken, {"Failed", "Succeeded"})
    assert job["errors"][-1]["code"].startswith("MissingApiKey"), job
    saved = {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": f"{speech_base}/saved/v1"}
    view = await api.json("PUT", "/api/settings", json=saved)
    assert view["openaiApiKey"] == {"configured": True, "source": "settings"}
    await api.json("POST", f"/api/jobs/{spoken}/retry", 202)  # the saved key: 500, then 400
    job = await api.wait_status(spoken, {"Failed", "Succeeded"})
    assert job["status"] == "Failed" and job["attempt"] == 2, job
    # the provider's answer, which quoted the key, is kept in the error with the key redacted
    assert f"provided: {REDACTED}" in json.dumps(job["errors"][-1]), job["errors"]
    await api.json("POST", f"/api/jobs/{spoken}/retry", 202)  # then audio
    assert (await api.wait_status(spoken, {"Failed", "Succeeded"}))["status"] == "Succeeded"
    return [succeeded, canceled, spoken]


async def read_everything(api: Recording, job_ids: list[str]) -> None:
    """Every answer the server gives about the jobs and itself, so each is searched."""
    for job_id in job_ids:
        for view in ("", "/log", "/diagnostics", "/events", "/output"):
            status, _ = await api.call("GET", f"/api/jobs/{job_id}{view}")
            assert status in (200, 404), (job_id, view, status)
    for path in ("/api/jobs", "/api/settings", "/api/system-check", "/api/errors", "/metrics"):
        await api.call("GET", path)
    # refusals, which must not quote what they were sent
    await api.json("GET", "/api/jobs/no-such-job", 404)
    secret_script = {"preset": "default", "brief": {"script": [f"Say {SAVED_KEY}."]}}
    await api.json("POST", "/api/jobs", 400, json=secret_script)
    await api.json("POST", "/api/jobs", 400, json=SAMPLE, headers={"Idempotency-Key": TOKEN})
    await api.json("PUT", "/api/settings", 400, json={"openaiApiKey": f"{SAVED_KEY} x"})
    await api.json("GET", "/api/jobs", 401, headers={"Authorization": f"Bearer {TOKEN}x"})
    await api.json("POST", "/api/session", 401, json={"token": f"{TOKEN}x"})
    await api.call("POST", "/api/session", json={"token": TOKEN})  # sets the cookie


def replay_outputs(data_dir: Path, job_ids: list[str]) -> list[bytes]:
    """`aura replay` of each job, as text and as JSON, run as an operator of the server would
    (its secrets in the environment)."""
    env = clean_env(OPENAI_API_KEY=ENV_KEY, AURA_TOKEN=TOKEN)
    outputs = []
    for job_id in job_ids:
        for extra in ([], ["--json"]):
            argv = [*AURA, "replay", job_id, "--data-dir", str(data_dir), *extra]
            done = subprocess.run(argv, capture_output=True, env=env, timeout=60, check=True)
            outputs += [done.stdout, done.stderr]
    return outputs


def stopped_output(served: Served) -> bytes:
    """Stop the server (SIGTERM) and return all it wrote to stdout and stderr."""
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.stdout is not None
    stdout = served.proc.stdout.read()
    assert served.proc.wait(timeout=30) == 0
    return stdout.encode() + served.log.read_bytes()


def leaks(where: str, data: bytes) -> list[str]:
    return [f"{canary[:14]}... in {where}" for canary in CANARIES if canary.encode() in data]


async def test_no_secret_leaks_from_jobs_logs_answers_or_files(
    speech: tuple[EchoingSpeech, str], tmp_path: Path
) -> None:
    stand_in, speech_base = speech
    data_dir = tmp_path / "data"
    env = {
        "OPENAI_API_KEY": ENV_KEY,
        "AURA_TOKEN": TOKEN,
        "AURA_OPENAI_BASE_URL": f"{speech_base}/env/v1",
        "AURA_LOG_LEVEL": "DEBUG",
        "AURA_LOG_FILE": "logs/aura.log",
    }
    with aura_serve(data_dir, **env) as served:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        jar = aiohttp.CookieJar(unsafe=True)  # keeps the cookie of 127.0.0.1
        async with aiohttp.ClientSession(headers=auth, cookie_jar=jar) as session:
            api = Recording(session, f"http://127.0.0.1:{served.port}")
            assert (await api.call("GET", "/api/jobs", headers={"Authorization": ""}))[0] == 401
            job_ids = await run_jobs(api, speech_base)
            await read_everything(api, job_ids)
        output = stopped_output(served)
    # the secrets did reach where they belong: the provider got each key
    sent = [authorization for authorization, _ in stand_in.requests]
    assert sent[:2] == [f"Bearer {ENV_KEY}"] * 2 and set(sent[2:]) == {f"Bearer {SAVED_KEY}"}
    found = leaks("the server's stdout and stderr", output)
    found += [
        leak for asked, answer in api.answers for leak in leaks(f"the answer to {asked}", answer)
    ]
    found += [leak for out in replay_outputs(data_dir, job_ids) for leak in leaks("replay", out)]
    settings_file = data_dir / SETTINGS_FILE
    files = [p for p in data_dir.rglob("*") if p.is_file() and p != settings_file]
    assert any(p.name.startswith("aura.db") for p in files)
    assert (data_dir / "logs" / "aura.log").stat().st_size > 0
    found += [leak for p in files for leak in leaks(str(p.relative_to(data_dir)), p.read_bytes())]
    assert not found, found
    # the one place a secret is kept: the saved key, in a file only its owner can read
    assert leaks(SETTINGS_FILE, settings_file.read_bytes()) == [
        f"{SAVED_KEY[:14]}... in {SETTINGS_FILE}"
    ]
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
