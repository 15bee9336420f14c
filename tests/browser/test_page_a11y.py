"""axe-core finds no serious or critical violation in the page's states: idle, rendering,
failed, succeeded."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page, expect

from aura.tests.browser.server import OPENAI_BRIEF, AuraServer
from aura.tests.browser.ui import (
    PageFactory,
    error_card,
    open_job,
    start_sample,
    video_duration,
    wait_status,
    wait_step_status,
)

pytestmark = pytest.mark.slow  # real renders through a real server

BLOCKING = ("serious", "critical")


async def blocking_violations(page: Page) -> list[str]:
    """Each serious or critical violation: rule, impact, and the first offending nodes."""
    results = await Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in violations
        if v["impact"] in BLOCKING
    ]


async def test_no_serious_or_critical_violation_idle_rendering_failed_or_succeeded(
    server: AuraServer, open_page: PageFactory
) -> None:
    page = await open_page(server)
    found: dict[str, list[str]] = {"idle": await blocking_violations(page)}

    await start_sample(page)
    await wait_step_status(page, "broll", "Running")
    found["rendering"] = await blocking_violations(page)
    await wait_status(page, "Succeeded")
    await video_duration(page)
    found["succeeded"] = await blocking_violations(page)

    failed_id = (await server.post_json("/api/jobs", OPENAI_BRIEF))["jobId"]
    await open_job(page, failed_id)
    await wait_status(page, "Failed")
    await expect(error_card(page)).to_be_visible()
    found["failed"] = await blocking_violations(page)

    assert found == {"idle": [], "rendering": [], "succeeded": [], "failed": []}, found
