"""The drawer keeps up with its job: a retry made outside the page (another tab, the CLI) is
followed to the end, a double click on Retry Step retries once and leaves the job's own error
card, and the drawer gives focus back when it closes."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, Request, expect

from aura.tests.browser.server import OPENAI_BRIEF, AuraServer, Speech
from aura.tests.browser.ui import (
    RENDER_MS,
    PageFactory,
    button,
    drawer,
    error_card,
    open_job,
    start_sample,
    wait_status,
)

pytestmark = pytest.mark.slow  # real renders through a real server

KEY = "sk-browser-test-0123456789abcdef"
MISSING_KEY = "MissingApiKey:OPENAI_API_KEY"


async def failed_for_want_of_a_key(server: AuraServer, page: Page) -> str:
    """A job whose preflight fails (no OpenAI key), shown failed in the drawer; its id."""
    job_id: str = (await server.post_json("/api/jobs", OPENAI_BRIEF))["jobId"]
    await open_job(page, job_id)
    await wait_status(page, "Failed")
    await expect(error_card(page)).to_contain_text(MISSING_KEY)
    return job_id


async def attempt_shown(page: Page, attempt: int) -> None:
    await expect(drawer(page).locator(".job-attempt")).to_have_text(str(attempt), timeout=RENDER_MS)


async def test_a_retry_made_outside_the_page_is_followed_to_the_end(
    server: AuraServer, open_page: PageFactory, speech: Speech
) -> None:
    page = await open_page(server)
    await page.evaluate("window.__sameDocument = true")
    job_id = await failed_for_want_of_a_key(server, page)

    # another client fixes the key and retries: the page's stream had ended with the failure
    settings = {"openaiApiKey": KEY, "openaiBaseUrl": speech.base_url}
    await server.put_json("/api/settings", settings)
    retried: dict[str, Any] = await server.post_json(f"/api/jobs/{job_id}/retry", {}, status=202)
    assert retried["attempt"] == 2

    await attempt_shown(page, 2)
    await wait_status(page, "Succeeded")
    await expect(drawer(page)).to_have_attribute("data-job-id", job_id)
    await expect(error_card(page)).to_have_count(0)
    await expect(page.locator("video")).to_have_count(1)
    log = await server.log(job_id)
    assert log[-1]["type"] == "JobSucceeded" and log[-1]["attempt"] == 2
    await expect(drawer(page)).to_have_attribute("data-last-seq", str(log[-1]["seq"]))
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"


async def test_a_double_click_on_retry_step_retries_once_and_keeps_the_jobs_error_card(
    server: AuraServer, open_page: PageFactory
) -> None:
    page = await open_page(server)
    job_id = await failed_for_want_of_a_key(server, page)
    retries: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith(f"/api/jobs/{job_id}/retry"):
            retries.append(request.url)

    page.on("request", record)
    await error_card(page).get_by_role("button", name="Retry Step", exact=True).dblclick()

    await attempt_shown(page, 2)  # attempt 2 fails in preflight too: still no key
    await wait_status(page, "Failed")
    card = error_card(page)
    await expect(card).to_contain_text(MISSING_KEY)
    await expect(card.get_by_role("button", name="Open Settings", exact=True)).to_be_visible()
    await expect(card.get_by_role("button", name="Retry Step", exact=True)).to_be_enabled()
    assert len(retries) == 1, retries
    job = await server.get_json(f"/api/jobs/{job_id}")
    assert (job["status"], job["attempt"]) == ("Failed", 2)


async def test_escape_closes_the_drawer_and_focus_returns_to_what_opened_it(
    server: AuraServer, open_page: PageFactory
) -> None:
    page = await open_page(server)
    await start_sample(page)
    await expect(drawer(page)).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(drawer(page)).to_be_hidden()
    await expect(button(page, "Create sample video")).to_be_focused()

    await button(page, "Settings").click()
    await page.get_by_label("OpenAI API key", exact=True).focus()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("region", name="Settings")).to_be_hidden()
    await expect(button(page, "Settings")).to_be_focused()
