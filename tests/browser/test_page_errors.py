"""The page's error card and actions on real jobs: a missing key fixed in Settings then Retry
Step, and Cancel, Copy diagnostics and Retry Job."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from playwright.async_api import Page, expect

from aura.tests.browser.server import OPENAI_BRIEF, AuraServer, ServerFactory, Speech
from aura.tests.browser.ui import (
    PageFactory,
    button,
    drawer,
    error_card,
    open_job,
    screenshot,
    start_sample,
    wait_status,
    wait_step_status,
)

pytestmark = pytest.mark.slow  # real renders through a real server

KEY = "sk-browser-test-0123456789abcdef"
#: set as the server's OPENAI_API_KEY: it must never reach the page
CANARY = "sk-CANARY-9f8e7d6c5b4a39281706"
RENDER_TOOLS = ("ffmpeg", "ffprobe", "espeak-ng", "espeak")


async def test_a_missing_key_is_saved_in_settings_and_retry_step_continues_the_same_job(
    server: AuraServer, open_page: PageFactory, speech: Speech
) -> None:
    page = await open_page(server)
    job_id = (await server.post_json("/api/jobs", OPENAI_BRIEF))["jobId"]
    await open_job(page, job_id)
    await wait_status(page, "Failed")
    card = error_card(page)
    await expect(card).to_be_visible()
    await expect(card).to_contain_text("MissingApiKey:OPENAI_API_KEY")
    await screenshot(card, "error-card")

    await card.get_by_role("button", name="Open Settings", exact=True).click()
    await expect(page.locator("#openai-api-key")).to_be_focused()
    assert await page.evaluate("document.activeElement.id") == "openai-api-key"
    await page.get_by_label("OpenAI API key", exact=True).fill(KEY)
    await page.get_by_label("OpenAI base URL", exact=True).fill(speech.base_url)
    async with page.expect_response(
        lambda r: r.url.endswith("/api/settings") and r.request.method == "PUT"
    ) as saved:
        await button(page, "Save settings").click()
    assert (await saved.value).status == 200
    settings = await server.get_json("/api/settings")
    assert settings["openaiApiKey"] == {"configured": True, "source": "settings"}
    assert settings["openaiBaseUrl"] == {"value": speech.base_url, "source": "settings"}
    assert KEY not in await page.content()

    await error_card(page).get_by_role("button", name="Retry Step", exact=True).click()
    await wait_status(page, "Succeeded")
    await expect(drawer(page)).to_have_attribute("data-job-id", job_id)
    job = await server.get_json(f"/api/jobs/{job_id}")
    assert (job["status"], job["attempt"]) == ("Succeeded", 2)
    assert speech.requests and all(auth == f"Bearer {KEY}" for auth, _ in speech.requests)
    assert_retry_reused(await server.log(job_id))


def assert_retry_reused(log: list[dict[str, Any]]) -> None:
    """Attempt 1 failed in preflight on the key; attempt 2 ran preflight again, reused
    (StepSkipped) every step attempt 1 had finished with files, and ran the rest to success."""
    steps = [e for e in log if e["type"].startswith("Step")]
    failed = [e for e in steps if e["attempt"] == 1 and e["type"] == "StepFailed"]
    assert [(e["step"], e["data"]["error"]["code"]) for e in failed] == [
        ("preflight", "MissingApiKey:OPENAI_API_KEY")
    ]
    reusable = {
        e["step"]
        for e in steps
        if e["attempt"] == 1 and e["type"] == "StepSucceeded" and e["data"]["artifacts"]
    }
    second = {e["step"]: e["type"] for e in steps if e["attempt"] == 2}  # each step's last
    started = [e["step"] for e in steps if e["attempt"] == 2 and e["type"] == "StepStarted"]
    assert started[0] == "preflight" and second["preflight"] == "StepSucceeded", second
    assert {s for s, last in second.items() if last == "StepSkipped"} == reusable, second
    assert set(second.values()) <= {"StepSucceeded", "StepSkipped"}, second
    assert log[-1]["type"] == "JobSucceeded" and log[-1]["attempt"] == 2


async def test_cancel_stops_the_render_and_diagnostics_then_retry_job_follows_a_new_job(
    make_server: ServerFactory, open_page: PageFactory
) -> None:
    server = await make_server(OPENAI_API_KEY=CANARY)
    page = await open_page(server, permissions=["clipboard-read", "clipboard-write"])
    job_id = await start_sample(page)
    await wait_step_status(page, "broll", "Running")
    assert await running_tools(server.data_dir), "no render process to stop"
    await button(page, "Cancel").click()
    await wait_status(page, "Canceled")
    assert (await server.get_json(f"/api/jobs/{job_id}"))["status"] == "Canceled"
    assert render_processes(server.data_dir) == []
    await expect(button(page, "Cancel")).to_have_count(0)
    # a cancel is no error (the server records none): a plain notice, no "Error" alert
    notice = drawer(page).get_by_role("status").filter(has_text=re.compile(r"^Canceled$"))
    await expect(notice).to_be_visible()
    await expect(error_card(page)).to_have_count(0)
    await expect(drawer(page)).not_to_contain_text("Code:")

    diagnostics = await copied_diagnostics(page)
    assert diagnostics["jobId"] == job_id
    assert CANARY not in json.dumps(diagnostics)

    await button(page, "Retry Job").click()
    await expect(drawer(page)).not_to_have_attribute("data-job-id", job_id)
    new_id = await drawer(page).get_attribute("data-job-id")
    assert new_id
    await wait_status(page, "Succeeded")
    created = (await server.log(new_id))[0]
    assert created["type"] == "JobCreated" and created["data"]["rerunOf"] == job_id
    assert (await server.get_json(f"/api/jobs/{job_id}"))["status"] == "Canceled"


async def copied_diagnostics(page: Page) -> Any:
    """Click "Copy diagnostics"; the JSON the clipboard holds once the page says it is copied.
    (wait_for_function does not await an async predicate: its first poll's promise is truthy.)"""
    await page.evaluate("navigator.clipboard.writeText('')")
    await button(page, "Copy diagnostics").click()
    copied = page.get_by_text("Diagnostics copied to the clipboard.", exact=True)
    await expect(copied).to_be_visible(timeout=30_000)  # the page's default, as before
    return json.loads(await page.evaluate("navigator.clipboard.readText()"))


async def running_tools(data_dir: Path, seconds: float = 30.0) -> list[str]:
    """Wait until a render tool runs on `data_dir` (broll's ffmpeg starts just after the step
    is shown Running); its processes, or [] when none came."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not (found := render_processes(data_dir)):
        if asyncio.get_running_loop().time() > deadline:
            return []
        await asyncio.sleep(0.05)
    return found


def render_processes(data_dir: Path) -> list[str]:
    """ffmpeg / ffprobe / espeak-ng processes working in or on `data_dir`."""
    folder = str(data_dir.resolve())
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "cwd"]):
        info = proc.info
        if info["name"] not in RENDER_TOOLS:
            continue
        args = " ".join(info["cmdline"] or [])
        if folder in args or str(data_dir) in args or (info["cwd"] or "").startswith(folder):
            found.append(f"{proc.pid} {args}")
    return found
