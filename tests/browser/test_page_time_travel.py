"""The "Time travel" slider shows each seq as `aura replay JOB --at SEQ --json` does."""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.async_api import Page, expect

from aura.tests.browser.server import AURA_BIN, AuraServer
from aura.tests.browser.ui import (
    PageFactory,
    bar,
    button,
    drawer,
    row,
    start_sample,
    wait_status,
)

pytestmark = pytest.mark.slow  # real renders through a real server


async def replay(server: AuraServer, job_id: str, seq: int) -> Any:
    """`aura replay JOB --at SEQ --json` on the server's folder (read-only, beside the server)."""
    proc = await asyncio.create_subprocess_exec(
        AURA_BIN,
        "replay",
        job_id,
        "--at",
        str(seq),
        "--json",
        "--data-dir",
        str(server.data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=server.env,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


def moments(log: list[dict[str, Any]]) -> list[int]:
    """Seqs worth a look: the first event, narration done, broll part way, the last event."""
    first_broll = [e["seq"] for e in log if (e["type"], e["step"]) == ("StepProgressed", "broll")]
    narrated = [e["seq"] for e in log if (e["type"], e["step"]) == ("StepSucceeded", "narration")]
    assert first_broll and narrated, [e["type"] for e in log]
    return [log[0]["seq"], narrated[0], first_broll[len(first_broll) // 2], log[-1]["seq"]]


def elapsed_texts(log: list[dict[str, Any]], seq: int) -> set[str]:
    """The drawer's Elapsed as of event `seq`: from the job's start (or creation) to that event's
    time, not to now (m:ss, the seconds rounded either way)."""
    upto = [e for e in log if e["seq"] <= seq]
    started = [e["ts"] for e in upto if e["type"] == "JobStarted"]
    start = datetime.fromisoformat((started or [upto[0]["ts"]])[0])
    seconds = (datetime.fromisoformat(upto[-1]["ts"]) - start).total_seconds()
    return {f"{int(s) // 60}:{int(s) % 60:02d}" for s in (math.floor(seconds), math.ceil(seconds))}


def percent_pattern(pct: float) -> re.Pattern[str]:
    """aria-valuenow is an integer: the fold's percent rounded or truncated."""
    allowed = sorted({math.floor(pct), round(pct)})
    return re.compile("^(" + "|".join(str(v) for v in allowed) + ")$")


async def test_the_slider_shows_each_seq_as_replay_does(
    server: AuraServer, open_page: PageFactory
) -> None:
    page = await open_page(server)
    job_id = await start_sample(page)
    await wait_status(page, "Succeeded")
    log = await server.log(job_id)
    seqs = [e["seq"] for e in log]

    await page.get_by_text("Technical details", exact=True).click()
    slider = page.get_by_role("slider", name="Time travel")
    await expect(slider).to_be_visible()
    low, high = [int(await slider.get_attribute(a) or -1) for a in ("min", "max")]
    assert (low, high) in {(seqs[0], seqs[-1]), (0, len(seqs) - 1)}, (low, high, seqs)

    for seq in moments(log):
        value = seq if (low, high) == (seqs[0], seqs[-1]) else seqs.index(seq)
        await show_at(page, slider_value=value, job_id=job_id, seq=seq)
        if (low, high) == (0, len(seqs) - 1):  # by event: it says which one, and its type
            about = f"event {value + 1} of {len(seqs)}, {log[value]['type']}"
            await expect(slider).to_have_attribute("aria-valuetext", about)
        # a past view runs on its event's clock: no live ETA, elapsed as it was then
        elapsed = re.compile("^(" + "|".join(elapsed_texts(log, seq)) + ")$")
        await expect(drawer(page).locator(".job-elapsed")).to_have_text(elapsed)
        await expect(drawer(page).locator(".job-eta")).to_have_text("\u2013")  # an en dash: none
        await expect(drawer(page).get_by_text(re.compile(r"^ETA "))).to_have_count(0)
        state = (await replay(server, job_id, seq))["state"]
        await expect(drawer(page)).to_have_attribute("data-status", state["status"])
        for step in state["steps"]:
            await expect(row(page, step["name"])).to_have_attribute("data-status", step["status"])
            pattern = percent_pattern(step["progressPct"])
            await expect(bar(page, step["name"])).to_have_attribute("aria-valuenow", pattern)

    await button(page, "Back to live").click()
    await expect(page.get_by_text(re.compile("Showing the job as of event"))).to_have_count(0)
    await expect(drawer(page)).to_have_attribute("data-status", "Succeeded")
    await expect(drawer(page)).to_have_attribute("data-last-seq", str(seqs[-1]))
    for step in ("preflight", "narration", "broll", "subtitles", "mux"):
        await expect(bar(page, step)).to_have_attribute("aria-valuenow", "100")


async def show_at(page: Page, *, slider_value: int, job_id: str, seq: int) -> None:
    """Move the slider; the page asks for the job `?at=seq` and says which event it shows."""

    def is_view_at(response: Any) -> bool:
        url = urlparse(response.url)
        return url.path == f"/api/jobs/{job_id}" and parse_qs(url.query).get("at") == [str(seq)]

    slider = page.get_by_role("slider", name="Time travel")
    async with page.expect_response(is_view_at) as answer:
        await slider.fill(str(slider_value))
    assert (await answer.value).status == 200
    note = re.compile(rf"Showing the job as of event {seq}\b")
    await expect(page.get_by_text(note)).to_be_visible()
    await expect(drawer(page)).to_have_attribute("data-last-seq", str(seq))
