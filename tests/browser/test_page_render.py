"""The page following a real render: steps filling in order, a reload, and a server crash."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from aura.tests.browser.server import AuraServer
from aura.tests.browser.ui import (
    STEPS,
    PageFactory,
    drawer,
    never_decreases,
    open_job,
    recorded,
    screenshot,
    start_sample,
    video_duration,
    wait_progress,
    wait_status,
)

pytestmark = pytest.mark.slow  # real renders through a real server


async def test_sample_steps_fill_in_order_and_the_video_plays(
    server: AuraServer, open_page: PageFactory
) -> None:
    page = await open_page(server)
    job_id = await start_sample(page)
    await wait_progress(page, "broll")
    await screenshot(drawer(page), "drawer-mid-render")
    await wait_status(page, "Succeeded")

    assert await video_duration(page) >= 8.0
    await page.locator("video").scroll_into_view_if_needed()
    await expect(page.get_by_role("link", name="Download video")).to_be_visible()
    await screenshot(drawer(page), "success-view")
    job = await server.get_json(f"/api/jobs/{job_id}")
    assert job["status"] == "Succeeded"

    bars = (await recorded(page))["bars"]
    values = never_decreases(bars, job_id)
    assert set(STEPS) <= set(values), values
    full = [s["step"] for s in bars if s["job"] == job_id and s["value"] == 100]
    reached = list(dict.fromkeys(full))  # each step once, in the order it first showed 100
    assert reached == list(STEPS), reached
    for step in STEPS:  # every bar ends full, and each was seen below 100 first
        assert values[step][-1] == 100 and values[step][0] < 100, (step, values[step])


async def test_a_reload_mid_render_never_shows_a_step_going_back(
    server: AuraServer, open_page: PageFactory
) -> None:
    page = await open_page(server)
    job_id = await start_sample(page)
    await wait_progress(page, "broll")
    before = (await recorded(page))["bars"]
    assert [s for s in before if s["job"] == job_id], "no progressbar shown before the reload"

    await page.reload()
    await open_job(page, job_id)
    await wait_status(page, "Succeeded")
    after = (await recorded(page))["bars"]

    assert [s for s in after if s["job"] == job_id], "the reloaded page showed no progressbar"
    values = never_decreases(before + after, job_id)
    assert all(values[step][-1] == 100 for step in STEPS), values


async def test_a_server_killed_mid_render_and_restarted_is_followed_to_the_end_without_reload(
    server: AuraServer, open_page: PageFactory
) -> None:
    page = await open_page(server)
    job_id = await start_sample(page)
    await page.evaluate("window.__sameDocument = true")
    await wait_progress(page, "broll")

    await server.restart()  # SIGKILL, then `aura serve` again on the same port and folder
    await wait_status(page, "Succeeded")
    assert await video_duration(page) >= 8.0
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"

    log = await server.log(job_id)
    assert "JobInterrupted" in [e["type"] for e in log], "the kill did not interrupt the render"
    seqs = [e["seq"] for e in log]
    seen = await recorded(page)
    stream = f"/api/jobs/{job_id}/events"
    kinds = [c["kind"] for c in seen["connection"] if stream in c["url"]]
    assert kinds[:1] == ["open"] and "error" in kinds, kinds  # the stream dropped with the server
    assert "open" in kinds[kinds.index("error") :], kinds  # and came back
    messages = [m for m in seen["sse"] if stream in m["url"]]
    assert all(m["id"] for m in messages), messages  # every job event carries its seq
    delivered = [int(m["id"]) for m in messages]
    assert delivered, seen["opened"]
    assert len(delivered) == len(set(delivered)), f"a duplicate: {delivered}"
    first = seqs.index(delivered[0])
    assert delivered == seqs[first:], f"a gap or reorder: shown {delivered}, log {seqs}"
    shown = [d["seq"] for d in seen["drawer"] if d["job"] == job_id and d["seq"] is not None]
    assert shown and shown[-1] == seqs[-1], shown
    # what the stream did not bring, the page's first view held
    assert first == 0 or seqs[first - 1] <= shown[0], (shown[0], seqs[:first])
    assert shown == sorted(shown), f"data-last-seq went back: {shown}"
    assert set(shown) <= set(seqs), set(shown) - set(seqs)
    # the interrupted step restarts from 0 in the same attempt: its bar still never goes back
    never_decreases(seen["bars"], job_id)
