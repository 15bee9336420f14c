"""The page as the tests see it: its parts found by the contract's accessible names, and what the
recorder (recorder.js) saw."""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Locator, Page, expect

STEPS = ("preflight", "narration", "broll", "subtitles", "mux")
RECORDER_JS = (Path(__file__).parent / "recorder.js").read_text()
SCREENSHOTS = Path(__file__).parent / "screenshots"
#: milliseconds a render's milestones may take to show (a sample renders in about 7 s here)
RENDER_MS = 90_000
_NON_EMPTY = re.compile(r".+")
_PART_WAY = re.compile(r"^[1-9][0-9]?$")


#: the `open_page` fixture: `await open_page(server, permissions=[...])`
PageFactory = Callable[..., Awaitable[Page]]


def drawer(page: Page) -> Locator:
    return page.get_by_role("dialog", name="Render status")


def bar(page: Page, step: str) -> Locator:
    return drawer(page).get_by_role("progressbar", name=step, exact=True)


def row(page: Page, step: str) -> Locator:
    """The step's row: the nearest element around its progressbar that carries data-status."""
    return bar(page, step).locator("xpath=ancestor::*[@data-status][1]")


def error_card(page: Page) -> Locator:
    return page.get_by_role("alert", name="Error")


def button(page: Page, name: str) -> Locator:
    return page.get_by_role("button", name=name, exact=True)


async def job_id_shown(page: Page) -> str:
    await expect(drawer(page)).to_have_attribute("data-job-id", _NON_EMPTY)
    job_id = await drawer(page).get_attribute("data-job-id")
    assert job_id
    return job_id


async def start_sample(page: Page) -> str:
    """Click "Create sample video"; the drawer opens on the new job; its id."""
    await button(page, "Create sample video").click()
    await expect(drawer(page)).to_be_visible()
    return await job_id_shown(page)


async def open_job(page: Page, job_id: str) -> None:
    """The drawer on `job_id`: the page may open it by itself (after a reload); if it does not,
    the job's button in the job list opens it."""
    in_list = (
        page.get_by_role("region", name="Jobs")
        .get_by_role("button")
        .filter(has_text=re.compile(re.escape(job_id)))
    )
    shown = drawer(page).and_(page.locator(f'[data-job-id="{job_id}"]'))
    await expect(shown.or_(in_list).first).to_be_visible(timeout=RENDER_MS)
    if not await shown.is_visible():
        await in_list.first.click()
        await expect(shown).to_be_visible()


async def wait_status(page: Page, status: str) -> None:
    await expect(drawer(page)).to_have_attribute("data-status", status, timeout=RENDER_MS)


async def wait_step_status(page: Page, step: str, status: str) -> None:
    await expect(row(page, step)).to_have_attribute("data-status", status, timeout=RENDER_MS)


async def wait_progress(page: Page, step: str) -> None:
    """Until the step's bar shows a percent between 1 and 99: part way through its work."""
    await expect(bar(page, step)).to_have_attribute("aria-valuenow", _PART_WAY, timeout=RENDER_MS)


async def recorded(page: Page) -> dict[str, list[dict[str, Any]]]:
    """What recorder.js saw on the current document: bars, drawer, sse, opened."""
    seen: dict[str, list[dict[str, Any]]] = await page.evaluate("window.__auraTest")
    return seen


async def video_duration(page: Page) -> float:
    """The success view's video duration, once its metadata has loaded."""
    video = page.locator("video")
    await expect(video).to_have_count(1, timeout=RENDER_MS)
    duration: float = await video.evaluate(
        """v => v.readyState >= 1 ? v.duration : new Promise((ok, fail) => {
               v.addEventListener('loadedmetadata', () => ok(v.duration), {once: true});
               v.addEventListener('error', () => fail(new Error('video error ' +
                   (v.error && v.error.code))), {once: true});
           })"""
    )
    return duration


async def screenshot(target: Locator, name: str) -> Path:
    """A picture of `target` in tests/browser/screenshots/ (gitignored), for people to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await target.screenshot(path=str(path))
    return path


def never_decreases(bars: list[dict[str, Any]], job_id: str) -> dict[str, list[int]]:
    """Each step's aria-valuenow values on `job_id`, in the order shown; asserts none goes down."""
    by_step: dict[str, list[int]] = {}
    for sample in bars:
        if sample["job"] not in (job_id, None) or sample["value"] is None:
            continue
        by_step.setdefault(sample["step"], []).append(sample["value"])
    for step, values in by_step.items():
        drops = [(a, b) for a, b in itertools.pairwise(values) if b < a]
        assert not drops, f"{step} progressbar went down: {drops} in {values}"
    return by_step
