"""GET/PUT /api/settings on a real server: shapes, the file on disk, validation, precedence, a
key sent only to the base URL it was saved with (never the environment's key to a saved URL),
and every configured key kept out of answers, events, /log, diagnostics and log lines (a brief
holding one is refused)."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from render_helpers import leftovers

from aura.engine.config.saved_settings import MAX_PAST_KEYS, SETTINGS_FILE
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import AuraError
from aura.engine.files import atomic
from aura.engine.run.context import StepContext
from aura.engine.tools.openai_tts import request_speech
from aura.http.keys import ENGINE
from aura.projections.events import Artifact
from aura.tests.e2e.helpers import follow, log_lines, submit

#: keys that match no key-like pattern of the redaction: only the value itself can hide them
SAVED_KEY = "plainSavedKeyValue0123"
ENV_KEY = "plainEnvKeyValue4567"
OTHER_KEY = "plainOtherKeyValue8901"
TOKEN = "plainServerTokenValue0123456789"
SAVED_URL = "http://127.0.0.1:9/saved/v1"
ENV_URL = "http://127.0.0.1:9/env/v1"
DEFAULT_URL = "https://api.openai.com/v1"
FAILURES = {"step-error", "job-failed"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "remediation", "correlationId"}


def shape(key_source: str | None, url: str, url_source: str) -> dict[str, Any]:
    return {
        "openaiApiKey": {"configured": key_source is not None, "source": key_source},
        "openaiBaseUrl": {"value": url, "source": url_source},
    }


async def put(client: Any, body: Any, status: int = 200) -> dict[str, Any]:
    resp = await client.put("/api/settings", json=body)
    text = await resp.text()
    assert resp.status == status, text
    assert SAVED_KEY not in text and ENV_KEY not in text and OTHER_KEY not in text
    answer: dict[str, Any] = json.loads(text)
    return answer


async def get(client: Any) -> dict[str, Any]:
    resp = await client.get("/api/settings")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    answer: dict[str, Any] = await resp.json()
    return answer


def saved_file(settings: Settings) -> Path:
    return settings.data_dir / SETTINGS_FILE


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away: the file's 0600 must come from Aura, not the umask."""
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


async def test_nothing_configured_by_default(client: Any, settings: Settings) -> None:
    assert await get(client) == shape(None, DEFAULT_URL, "default")
    assert not saved_file(settings).exists()  # reading saves nothing


@pytest.mark.usefixtures("open_umask")
async def test_put_saves_an_owner_only_file_and_never_answers_the_key(
    client: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    commit = atomic.commit

    def spying_commit(temp: Path, path: Path) -> None:  # the temp file's mode before the rename
        modes.append(stat.S_IMODE(temp.stat().st_mode))
        commit(temp, path)

    monkeypatch.setattr(atomic, "commit", spying_commit)
    answer = await put(client, {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL})
    assert answer == shape("settings", SAVED_URL, "settings")
    assert await get(client) == answer
    path = saved_file(settings)
    assert modes == [0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL}
    assert leftovers(settings.data_dir) == []
    # the file is replaced whole, still owner-only; a member left out stays as it is
    answer = await put(client, {"openaiApiKey": OTHER_KEY, "openaiBaseUrl": ENV_URL})
    assert answer == shape("settings", ENV_URL, "settings")
    assert json.loads(path.read_text()) == {"openaiApiKey": OTHER_KEY, "openaiBaseUrl": ENV_URL}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and modes == [0o600, 0o600]
    assert await put(client, {}) == shape("settings", ENV_URL, "settings")
    assert await put(client, {"openaiBaseUrl": None}) == shape("settings", DEFAULT_URL, "default")
    assert json.loads(path.read_text()) == {"openaiApiKey": OTHER_KEY}
    assert leftovers(settings.data_dir) == []


async def test_saved_values_win_over_the_environment_and_null_removes_them(
    make_client: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    monkeypatch.setenv("AURA_OPENAI_BASE_URL", ENV_URL)
    client = await make_client(settings=Settings.from_env(data_dir=settings.data_dir))
    engine = client.app[ENGINE]
    assert await get(client) == shape("environment", ENV_URL, "environment")
    assert await put(client, {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL}) == shape(
        "settings", SAVED_URL, "settings"
    )
    # what the runs that start now get
    assert engine.settings.openai_api_key == SAVED_KEY
    assert engine.runner.settings.openai_base_url == SAVED_URL
    # without its URL, the saved key goes to the environment's URL
    answer = await put(client, {"openaiBaseUrl": None})
    assert answer == shape("settings", ENV_URL, "environment")
    assert (engine.runner.settings.openai_api_key, engine.runner.settings.openai_base_url) == (
        SAVED_KEY,
        ENV_URL,
    )
    await put(client, {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL})
    # removing the key removes the URL saved with it: the environment's key, to its own URL
    answer = await put(client, {"openaiApiKey": None})
    assert answer == shape("environment", ENV_URL, "environment")
    assert (engine.runner.settings.openai_api_key, engine.runner.settings.openai_base_url) == (
        ENV_KEY,
        ENV_URL,
    )
    assert json.loads(saved_file(settings).read_text()) == {}


async def test_a_server_started_again_uses_the_saved_settings(
    make_client: Any, settings: Settings
) -> None:
    first = await make_client()
    await put(first, {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL})
    await first.close()  # the data folder is free again
    again = await make_client()
    assert await get(again) == shape("settings", SAVED_URL, "settings")
    assert again.app[ENGINE].settings.openai_api_key == SAVED_KEY


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"openaiApiKey": ""}, "InvalidInput:openaiApiKey"),
        ({"openaiApiKey": "abc"}, "InvalidInput:openaiApiKey"),  # too short to be redacted
        ({"openaiApiKey": "k" * 513}, "InvalidInput:openaiApiKey"),
        ({"openaiApiKey": f"{SAVED_KEY} x"}, "InvalidInput:openaiApiKey"),
        ({"openaiApiKey": f"{SAVED_KEY}\n"}, "InvalidInput:openaiApiKey"),
        ({"openaiApiKey": f"{SAVED_KEY}\u00e9"}, "InvalidInput:openaiApiKey"),
        ({"openaiApiKey": 12345678}, "InvalidInput:openaiApiKey"),
        ({"openaiBaseUrl": "ftp://127.0.0.1/v1"}, "InvalidInput:openaiBaseUrl"),
        ({"openaiBaseUrl": f"http://me:{SAVED_KEY}@127.0.0.1/v1"}, "InvalidInput:openaiBaseUrl"),
        ({"openaiBaseUrl": f"http://127.0.0.1/v1?key={SAVED_KEY}"}, "InvalidInput:openaiBaseUrl"),
        ({"openaiBaseUrl": "127.0.0.1/v1"}, "InvalidInput:openaiBaseUrl"),
        ({"openaiApiKey": OTHER_KEY, "openaiBaseUrl": "https://][@"}, "InvalidInput:openaiBaseUrl"),
        ({"openaiApiKey": OTHER_KEY, "openaiBaseUrl": "http://xn--"}, "InvalidInput:openaiBaseUrl"),
        ({"openaiBaseUrl": "http://h/" + "p" * 2048}, "InvalidInput:openaiBaseUrl"),
        ({"openaiBaseUrl": ["http://127.0.0.1/v1"]}, "InvalidInput:openaiBaseUrl"),
        ({"openaiApiKey": SAVED_KEY, "apiKey": SAVED_KEY}, "InvalidInput:body"),
        ([SAVED_KEY], "InvalidInput:body"),
        ("just text", "InvalidInput:body"),
    ],
)
async def test_bad_values_are_400_naming_the_field_and_change_nothing(
    client: Any, settings: Settings, body: Any, code: str
) -> None:
    await put(client, {"openaiApiKey": OTHER_KEY, "openaiBaseUrl": ENV_URL})
    before = saved_file(settings).read_bytes()
    answer = await put(client, body, 400)
    assert set(answer) == PROBLEM_KEYS
    assert answer["code"] == code and answer["status"] == 400
    assert "openaiApiKey" in answer["detail"] or "openaiBaseUrl" in answer["detail"]
    assert SAVED_KEY not in json.dumps(answer)  # no message quotes the value sent
    assert saved_file(settings).read_bytes() == before
    assert await get(client) == shape("settings", ENV_URL, "settings")


async def test_a_base_url_is_saved_only_with_the_key_for_it(
    client: Any, settings: Settings
) -> None:
    """The rule: a saved base URL is used only with the key saved with it, in the same PUT.
    A URL without a key, or a new key while a URL is saved that does not name its URL, is 400
    InvalidInput:openaiBaseUrl and changes nothing; removing the key removes its URL."""

    async def refused(body: dict[str, Any], words: str) -> None:
        before = saved_file(settings).read_bytes() if saved_file(settings).exists() else None
        view = await get(client)
        answer = await put(client, body, 400)
        assert answer["code"] == "InvalidInput:openaiBaseUrl" and words in answer["detail"]
        assert await get(client) == view
        after = saved_file(settings).read_bytes() if saved_file(settings).exists() else None
        assert after == before

    save_with_it = "save the key for this URL with it"
    await refused({"openaiBaseUrl": SAVED_URL}, save_with_it)
    await refused({"openaiApiKey": None, "openaiBaseUrl": SAVED_URL}, save_with_it)
    assert not saved_file(settings).exists()
    answer = await put(client, {"openaiApiKey": SAVED_KEY})
    assert answer == shape("settings", DEFAULT_URL, "default")
    # a key saved earlier does not make it the URL's: only the key sent with it does
    await refused({"openaiBaseUrl": SAVED_URL}, save_with_it)
    both: dict[str, Any] = {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL}
    assert await put(client, both) == shape("settings", SAVED_URL, "settings")
    # a new key names its URL: it is never sent to a URL someone else saved
    await refused({"openaiApiKey": OTHER_KEY}, "a base URL is saved")
    both = {"openaiApiKey": OTHER_KEY, "openaiBaseUrl": SAVED_URL}
    assert await put(client, both) == shape("settings", SAVED_URL, "settings")
    both = {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": None}
    assert await put(client, both) == shape("settings", DEFAULT_URL, "default")
    assert json.loads(saved_file(settings).read_text()) == {"openaiApiKey": SAVED_KEY}
    await put(client, {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL})
    assert await put(client, {"openaiApiKey": None}) == shape(None, DEFAULT_URL, "default")
    assert json.loads(saved_file(settings).read_text()) == {}


class Endpoint:
    """A speech API stand-in on 127.0.0.1 that records every request it gets, any path."""

    def __init__(self) -> None:
        self.requests: list[str] = []  # each request's method, path, headers and body

    async def handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode(errors="replace")
        self.requests.append(f"{request.method} {request.path_qs} {dict(request.headers)} {body}")
        return web.Response(body=b"RIFF....WAVE", content_type="audio/wav")

    async def start(self, aiohttp_server: Any) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return f"http://127.0.0.1:{(await aiohttp_server(app, host='127.0.0.1')).port}/v1"

    def bearers(self) -> list[str]:
        return [r.split("'Authorization': 'Bearer ")[1].split("'")[0] for r in self.requests]


async def test_the_environment_key_is_never_sent_to_a_url_saved_by_another_process(
    make_client: Any,
    settings: Settings,
    aiohttp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exfiltration the rule stops: any local process may PUT /api/settings on a server
    with no token. Pointing the base URL at its own listener (with no key, or with a key of its
    own, or through a settings file written by hand) gets it no request carrying the
    environment's key, nor a key the owner saves later."""

    async def speak(ctx: StepContext) -> list[Artifact]:  # the real request narration sends
        await request_speech("Hello.", "alloy", ctx.settings)
        return []

    own, evil = Endpoint(), Endpoint()
    own_url, evil_url = await own.start(aiohttp_server), await evil.start(aiohttp_server)
    attacker_key = "plainAttackerKey55555"
    path = saved_file(settings)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"openaiBaseUrl": evil_url}))  # a URL saved with no key
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    monkeypatch.setenv("AURA_OPENAI_BASE_URL", own_url)
    client = await make_client(
        settings=Settings.from_env(data_dir=settings.data_dir), pipeline={"speak": speak}
    )

    async def run_job() -> None:
        job = await submit(client)
        assert (await follow(client, job["jobId"]))[-1].event == "job-completed"

    assert await get(client) == shape("environment", own_url, "environment")
    await run_job()
    for body in ({"openaiBaseUrl": evil_url}, {"openaiApiKey": None, "openaiBaseUrl": evil_url}):
        answer = await put(client, body, 400)
        assert answer["code"] == "InvalidInput:openaiBaseUrl"
    await run_job()
    assert own.bearers() == [ENV_KEY, ENV_KEY] and evil.requests == []

    # its own key to its own URL: taken (that key only ever goes there)
    await put(client, {"openaiApiKey": attacker_key, "openaiBaseUrl": evil_url})
    await run_job()
    # the owner's new key alone is not sent to the URL saved with another key
    assert (await put(client, {"openaiApiKey": SAVED_KEY}, 400))["code"] == (
        "InvalidInput:openaiBaseUrl"
    )
    await run_job()
    # removing the saved key removes its URL: the environment's key, to its own URL again
    assert await put(client, {"openaiApiKey": None}) == shape("environment", own_url, "environment")
    await run_job()
    assert evil.bearers() == [attacker_key, attacker_key]
    assert not [r for r in evil.requests if ENV_KEY in r or SAVED_KEY in r]
    assert own.bearers() == [ENV_KEY, ENV_KEY, ENV_KEY]


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("title", "InvalidInput:brief.title"),
        ("script", "InvalidInput:brief.script[1]"),
        ("voice", "InvalidInput:brief.voice"),
        ("Idempotency-Key", "InvalidInput:Idempotency-Key"),
    ],
)
async def test_a_job_whose_inputs_hold_a_configured_secret_is_refused(
    make_client: Any, settings: Settings, where: str, code: str
) -> None:
    """The saved key, the environment's, one saved earlier and the server's token: a job whose
    brief or Idempotency-Key holds one is 400 naming the field, and nothing is stored (a
    JobCreated is kept for good: refusing is the only way to keep it out of the log)."""
    base = Settings(data_dir=settings.data_dir, openai_api_key=ENV_KEY)
    client = await make_client(settings=base, token=TOKEN)
    client.session.headers["Authorization"] = f"Bearer {TOKEN}"
    await put(client, {"openaiApiKey": OTHER_KEY})
    await put(client, {"openaiApiKey": SAVED_KEY})  # OTHER_KEY: saved earlier
    for secret in (SAVED_KEY, ENV_KEY, OTHER_KEY, TOKEN):
        brief: dict[str, Any] = {"title": "Fine", "script": ["One.", "Two."]}
        headers = {}
        if where == "title":
            brief["title"] = f"a {secret} b"
        elif where == "script":
            brief["script"] = ["One.", f"key={secret}"]
        elif where == "voice":
            brief["voice"] = secret
        else:
            headers["Idempotency-Key"] = f"k-{secret}"
        body = {"preset": "default", "brief": brief}
        resp = await client.post("/api/jobs", json=body, headers=headers)
        text = await resp.text()
        assert resp.status == 400, text
        answer = json.loads(text)
        assert answer["code"] == code and "configured API key" in answer["detail"]
        assert secret not in text
    listed = await (await client.get("/api/jobs")).json()
    assert listed["jobs"] == []
    # the same inputs without the secret are fine
    await submit(client, preset="default", brief={"title": "Fine", "script": ["One.", "Two."]})


async def test_a_key_replaced_by_later_saves_is_still_redacted(
    client: Any, settings: Settings
) -> None:
    """The keys saved earlier in the server's life (the newest MAX_PAST_KEYS) stay secrets:
    a brief stored before one was saved shows it in no /log line or diagnostics, and it is not
    copied into a new job by a rerun."""
    tricky = 'plain"Quote\\Back0123'  # JSON escapes it: the log holds it escaped
    job = await submit(
        client, preset="default", brief={"title": f"t {SAVED_KEY}", "script": [f"x{tricky}y"]}
    )
    await follow(client, job["jobId"])
    await put(client, {"openaiApiKey": SAVED_KEY})
    await put(client, {"openaiApiKey": tricky})
    for i in range(MAX_PAST_KEYS - 1):
        await put(client, {"openaiApiKey": f"{OTHER_KEY}{i}"})
    # SAVED_KEY is the oldest of the MAX_PAST_KEYS replaced keys kept, tricky the next
    past = client.app[ENGINE].past_keys
    assert len(past) == MAX_PAST_KEYS and past[:2] == (SAVED_KEY, tricky)
    raw = await (await client.get(f"/api/jobs/{job['jobId']}/log")).text()
    assert SAVED_KEY not in raw and "Quote" not in raw
    created = (await log_lines(client, job["jobId"]))[0]
    assert created["data"]["brief"]["title"] == "t [REDACTED]"
    assert created["data"]["brief"]["script"] == ["x[REDACTED]y"]
    diagnostics = await (await client.get(f"/api/jobs/{job['jobId']}/diagnostics")).text()
    assert SAVED_KEY not in diagnostics and "Quote" not in diagnostics
    resp = await client.post(f"/api/jobs/{job['jobId']}/rerun")
    answer = await resp.json()
    assert resp.status == 400 and answer["code"] == "InvalidInput:brief.title", answer
    assert SAVED_KEY not in json.dumps(answer)
    # one save more: SAVED_KEY falls past the bound, no secret any more (tricky still is)
    await put(client, {"openaiApiKey": OTHER_KEY})
    created = (await log_lines(client, job["jobId"]))[0]
    assert created["data"]["brief"]["title"] == f"t {SAVED_KEY}"
    assert created["data"]["brief"]["script"] == ["x[REDACTED]y"]


async def test_a_body_that_is_no_json_object_is_refused(make_client: Any) -> None:
    client = await make_client(max_body_bytes=4096)
    for raw in (b"", b"{", b"\xff\xfe"):
        resp = await client.put(
            "/api/settings", data=raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400 and (await resp.json())["code"] == "InvalidInput:body"
    resp = await client.put("/api/settings", data=SAVED_KEY, headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await client.put("/api/settings", json={"openaiApiKey": "k" * 8192})
    assert resp.status == 413  # the app's bound on bodies
    assert await get(client) == shape(None, DEFAULT_URL, "default")


async def test_a_saved_key_is_redacted_from_events_log_diagnostics_and_the_system_check(
    make_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A step's error quoting the key in effect (the environment's on attempt 1, the saved one
    on the retry after it was saved), and a title that held the saved key before it was saved:
    neither key shows in the stream's failure events, /log, diagnostics, the system check or
    the server's log records."""

    async def leaky(ctx: StepContext) -> list[Artifact]:
        raise ValueError(f"the provider said no to {ctx.settings.openai_api_key}")

    caplog.set_level(logging.DEBUG)
    base = Settings(data_dir=settings.data_dir, openai_api_key=ENV_KEY)
    client = await make_client(settings=base, pipeline={"leaky": leaky})
    # not a configured secret yet: the brief is taken, and stored as given
    title = f"leak {SAVED_KEY}"
    job = await submit(client, preset="default", brief={"title": title, "script": ["Hi."]})
    events = await follow(client, job["jobId"])
    assert events[-1].event == "job-failed"
    await put(client, {"openaiApiKey": SAVED_KEY})
    retried = await client.post(f"/api/jobs/{job['jobId']}/retry")
    assert retried.status == 202, await retried.text()
    events += await follow(client, job["jobId"], after=events[-1].id)
    failures = [e.data for e in events if e.event in FAILURES]
    assert len(failures) == 4 and events[-1].event == "job-failed"
    for failure in (failures[1], failures[3]):
        error = failure["error"]
        assert error["code"] == "Internal" and "[REDACTED]" in error["details"]["exception"]
    assert SAVED_KEY not in json.dumps(failures) and ENV_KEY not in json.dumps(failures)
    diagnostics = await (await client.get(f"/api/jobs/{job['jobId']}/diagnostics")).text()
    assert SAVED_KEY not in diagnostics and ENV_KEY not in diagnostics
    bundle = json.loads(diagnostics)
    assert bundle["system"]["settings"]["openaiKeyConfigured"] is True
    check = await (await client.get("/api/system-check")).text()
    assert SAVED_KEY not in check and ENV_KEY not in check
    [key] = [f for f in json.loads(check)["findings"] if f["check"] == "key:OPENAI_API_KEY"]
    assert key["status"] == "ok"
    raw = await (await client.get(f"/api/jobs/{job['jobId']}/log")).text()
    assert SAVED_KEY not in raw and ENV_KEY not in raw
    lines = await log_lines(client, job["jobId"])
    assert lines[0]["data"]["brief"]["title"] == "leak [REDACTED]"
    failed = [line for line in lines if line["type"] in ("StepFailed", "JobFailed")]
    assert [line["attempt"] for line in failed] == [1, 1, 2, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if SAVED_KEY in m or ENV_KEY in m]


async def test_an_unreadable_settings_file_stops_the_engine_naming_it(settings: Settings) -> None:
    path = saved_file(settings)
    path.parent.mkdir(parents=True)
    for content, reason in (
        (b"{not json", "malformed"),
        (b'{"openaiApiKey": 5}', "openaiApiKey"),
        (f'{{"openaiApiKey": "{SAVED_KEY} x"}}'.encode(), "openaiApiKey"),
        (b'{"openaiBaseUrl": "ftp://h/v1"}', "openaiBaseUrl"),
    ):
        path.write_bytes(content)
        with pytest.raises(AuraError) as caught:
            await Engine.open(settings)
        info = caught.value.info
        assert info.code == "SettingsUnreadable" and str(path) in info.message
        assert reason in info.message and SAVED_KEY not in str(info)
    assert not (settings.data_dir / "aura.db").exists()  # refused before the log was opened


async def test_a_save_that_cannot_be_written_changes_nothing(
    client: Any, settings: Settings
) -> None:
    await put(client, {"openaiApiKey": OTHER_KEY, "openaiBaseUrl": ENV_URL})
    saved_file(settings).unlink()
    saved_file(settings).mkdir()  # a folder where the file goes: the rename fails
    answer = await put(client, {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": SAVED_URL}, 500)
    assert answer["code"] == "OutputDirectoryNotWritable"
    assert str(saved_file(settings)) in answer["detail"]
    assert await get(client) == shape("settings", ENV_URL, "settings")
    assert client.app[ENGINE].runner.settings.openai_api_key == OTHER_KEY
    assert leftovers(settings.data_dir) == []
