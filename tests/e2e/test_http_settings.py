"""GET/PUT /api/settings on a real server: shapes, the file on disk, validation, precedence, and
the saved key kept out of every answer, event and log line."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from render_helpers import leftovers

from aura.engine import atomic
from aura.engine.context import StepContext
from aura.engine.engine import Engine
from aura.engine.errors import AuraError
from aura.engine.saved_settings import SETTINGS_FILE
from aura.engine.settings import Settings
from aura.http.app import ENGINE
from aura.projections.events import Artifact
from aura.tests.e2e.helpers import follow, log_lines, submit

#: keys that match no key-like pattern of the redaction: only the value itself can hide them
SAVED_KEY = "plainSavedKeyValue0123"
ENV_KEY = "plainEnvKeyValue4567"
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
    assert SAVED_KEY not in text and ENV_KEY not in text
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
    # a member left out stays as it is; the file is replaced whole, still owner-only
    assert await put(client, {"openaiBaseUrl": ENV_URL}) == shape("settings", ENV_URL, "settings")
    assert json.loads(path.read_text()) == {"openaiApiKey": SAVED_KEY, "openaiBaseUrl": ENV_URL}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and modes == [0o600, 0o600]
    assert await put(client, {}) == shape("settings", ENV_URL, "settings")
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
    assert await put(client, {"openaiApiKey": None}) == shape("environment", SAVED_URL, "settings")
    assert engine.runner.settings.openai_api_key == ENV_KEY
    answer = await put(client, {"openaiBaseUrl": None})
    assert answer == shape("environment", ENV_URL, "environment")
    assert engine.runner.settings.openai_base_url == ENV_URL
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
    await put(client, {"openaiBaseUrl": ENV_URL})
    before = saved_file(settings).read_bytes()
    answer = await put(client, body, 400)
    assert set(answer) == PROBLEM_KEYS
    assert answer["code"] == code and answer["status"] == 400
    assert "openaiApiKey" in answer["detail"] or "openaiBaseUrl" in answer["detail"]
    assert SAVED_KEY not in json.dumps(answer)  # no message quotes the value sent
    assert saved_file(settings).read_bytes() == before
    assert await get(client) == shape(None, ENV_URL, "settings")


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


async def test_a_saved_key_is_redacted_from_events_diagnostics_and_the_system_check(
    make_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A step's error quoting the key, and a brief holding it: neither shows it anywhere, the
    environment's key it replaced included."""

    async def leaky(ctx: StepContext) -> list[Artifact]:
        raise ValueError(f"the provider said no to {ctx.settings.openai_api_key}")

    caplog.set_level(logging.DEBUG)
    base = Settings(data_dir=settings.data_dir, openai_api_key=ENV_KEY)
    client = await make_client(settings=base, pipeline={"leaky": leaky})
    await put(client, {"openaiApiKey": SAVED_KEY})
    title = f"leak {SAVED_KEY} {ENV_KEY}"
    job = await submit(client, preset="default", brief={"title": title, "script": ["Hi."]})
    events = await follow(client, job["jobId"])
    assert events[-1].event == "job-failed"
    error = events[-1].data["error"]
    assert error["code"] == "Internal" and "[REDACTED]" in error["details"]["exception"]
    assert SAVED_KEY not in json.dumps([e.data for e in events if e.event in FAILURES])
    diagnostics = await (await client.get(f"/api/jobs/{job['jobId']}/diagnostics")).text()
    assert SAVED_KEY not in diagnostics and ENV_KEY not in diagnostics
    bundle = json.loads(diagnostics)
    assert bundle["system"]["settings"]["openaiKeyConfigured"] is True
    check = await (await client.get("/api/system-check")).text()
    assert SAVED_KEY not in check and ENV_KEY not in check
    [key] = [f for f in json.loads(check)["findings"] if f["check"] == "key:OPENAI_API_KEY"]
    assert key["status"] == "ok"
    lines = await log_lines(client, job["jobId"])
    failed = [line for line in lines if line["type"] in ("StepFailed", "JobFailed")]
    assert len(failed) == 2 and SAVED_KEY not in json.dumps(failed)
    assert not [r for r in caplog.records if SAVED_KEY in r.getMessage()]


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
    await put(client, {"openaiBaseUrl": ENV_URL})
    saved_file(settings).unlink()
    saved_file(settings).mkdir()  # a folder where the file goes: the rename fails
    answer = await put(client, {"openaiApiKey": SAVED_KEY}, 500)
    assert answer["code"] == "OutputDirectoryNotWritable"
    assert str(saved_file(settings)) in answer["detail"]
    assert await get(client) == shape(None, ENV_URL, "settings")
    assert client.app[ENGINE].runner.settings.openai_api_key is None
    assert leftovers(settings.data_dir) == []
