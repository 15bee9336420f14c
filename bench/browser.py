"""The page in a real browser: how soon a live event is painted, and whether a long job grows
its heap.

A real Aura app (in this process, `pipeline={}`: nothing renders) serves the page at `/`;
headless Chromium (/usr/bin/chromium, through Playwright) opens it and the drawer of one job.
Events are appended to that job through the store (the app's own EventLog), as a running step
appends its progress, and reach the page over its live stream.

- latency: 200 StepProgressed a second for 10 s. For each event, the time from its `ts` (set by
  the store when it commits) to (a) the drawer showing it (a MutationObserver on the drawer's
  `data-last-seq` and progressbars sees a value >= its seq) and (b) the next animation frame
  after that (the change is painted by then): p50 and p99 of each; target p99 of (b) <= 50 ms.
  Both clocks are this machine's: the page's is `performance.timeOrigin + performance.now()`,
  whose offset from Python's `time.time()` is measured and printed (not subtracted).
- heap: a second job's drawer, the JS heap used (CDP `Performance.getMetrics` JSHeapUsedSize,
  after `HeapProfiler.collectGarbage`) when it opens, after 2,000 events and after 20,000;
  target: less than 1 MiB more at 20,000 than at 2,000 (no growth with the job's length).

`python -m bench browser`. Needs Chromium at /usr/bin/chromium (`make setup` installs it).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid

from aiohttp import web
from playwright.async_api import Locator, Page, async_playwright, expect

from aura.engine.config.settings import Settings
from aura.http.app import create_app
from aura.http.keys import ENGINE
from aura.projections.events import (
    Event,
    JobCreated,
    JobStarted,
    Recorded,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from aura.store.batch import QueuedAppend
from aura.store.interface import EventStore

from ._common import fresh_dir, sized
from ._table import QUICK, figure

__all__ = ["main"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STEPS = ("preflight", "narration", "broll", "subtitles", "mux")
RUNNING = "broll"
RATE = 200.0
SECONDS = 10.0 if not QUICK else 0.5
TARGET_P99_MS = 50.0
LONG_JOB = sized(20_000, 400)
#: the events shown before the heap's growth is measured from
SHORT_JOB = sized(2_000, 200)
HEAP_TARGET_BYTES = 1 << 20
#: events per append while the long job is filled (one commit each)
CHUNK = 100

#: in the page: each change of the drawer's data-last-seq or a progressbar (MutationObserver),
#: with data-last-seq then, stamped three ways: `seen` when the observer runs (the DOM holds it);
#: `painted` when the frame that renders it is done (a frame-driving rAF loop knows whether a
#: change was made inside a frame, as the page's rAF-batched renders are, or before one; a
#: message posted at the frame's start runs once its rendering, paint included, is done); and
#: `nextRaf` in the first animation frame callback requested after the change (an upper bound:
#: a change made inside a frame waits a whole frame more for it).
OBSERVE_JS = """drawer => {
  const now = () => performance.timeOrigin + performance.now();
  const seen = [], painted = [], nextRaf = [];
  window.__benchPaint = {seen, painted, nextRaf};
  let inFrame = false, thisFrame = [], nextFrame = [], rafWaiting = null;
  const frameDone = new MessageChannel();
  frameDone.port1.onmessage = () => {
    const t = now();
    for (const seq of thisFrame) painted.push([t, seq]);
    thisFrame = [];
    inFrame = false;
  };
  const frame = () => {
    inFrame = true;
    thisFrame.push(...nextFrame);
    nextFrame = [];
    frameDone.port2.postMessage(0);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  new MutationObserver(() => {
    const seq = Number(drawer.getAttribute("data-last-seq"));
    seen.push([now(), seq]);
    (inFrame ? thisFrame : nextFrame).push(seq);
    if (rafWaiting !== null) { rafWaiting = Math.max(rafWaiting, seq); return; }
    rafWaiting = seq;
    requestAnimationFrame(() => { nextRaf.push([now(), rafWaiting]); rafWaiting = null; });
  }).observe(drawer, {subtree: true, attributes: true,
                      attributeFilter: ["data-last-seq", "aria-valuenow"]});
}"""


def _progress(k: int, n: int) -> StepProgressed:
    return StepProgressed(step=RUNNING, pct=round(99.0 * k / n, 2), eta_seconds=float(n - k) / RATE)


class Job:
    """A job appended by hand, its running step at RUNNING."""

    def __init__(self, log: EventStore, title: str) -> None:
        self.log = log
        self.job_id = uuid.uuid4().hex
        self.title = title
        self.version = 0
        self.last: QueuedAppend | None = None
        self.last_seq = 0

    async def start(self) -> None:
        events: list[Event] = [
            JobCreated(
                preset="default",
                brief={"title": self.title, "script": ["Benchmark."]},
                steps=STEPS,
                correlation_id=self.job_id,
            ),
            JobStarted(),
        ]
        for step in STEPS[: STEPS.index(RUNNING)]:
            events += [StepStarted(step=step), StepSucceeded(step=step, duration_seconds=0.1)]
        events.append(StepStarted(step=RUNNING))
        self.last_seq = (await self.append(events))[-1].seq

    def append(self, events: list[Event]) -> asyncio.Future[list[Recorded]]:
        """Queued, not awaited, as a job's run appends: each chained after the previous."""
        self.last = self.log.append_nowait(self.job_id, events, self.version, after=self.last)
        self.version += len(events)
        return self.last.future


# ---- latency ------------------------------------------------------------------------------------


async def _clock_offset_ms(page: Page) -> float:
    """The page's clock minus Python's, in ms, from the quickest of a few round trips."""
    best: tuple[float, float] = (float("inf"), 0.0)
    for _ in range(20):
        before = time.time()
        page_ms: float = await page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time()
        best = min(best, ((after - before) * 1000, page_ms - (before + after) / 2 * 1000))
    return best[1]


async def _paint_latency(page: Page, drawer: Locator, job: Job) -> list[str]:
    await drawer.evaluate(OBSERVE_JS)
    n = int(RATE * SECONDS)
    futures: list[asyncio.Future[list[Recorded]]] = []
    t0 = time.time() + 0.2
    for k in range(n):
        delay = t0 + k / RATE - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        futures.append(job.append([_progress(k, n)]))
    records = [recs[0] for recs in await asyncio.gather(*futures)]
    last = records[-1].seq
    await expect(drawer).to_have_attribute("data-last-seq", str(last), timeout=60_000)
    await page.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
    marks = await page.evaluate("window.__benchPaint")
    offset = await _clock_offset_ms(page)
    seen = _latencies(records, marks["seen"])
    painted = _latencies(records, sorted(marks["painted"]))
    next_raf = _latencies(records, marks["nextRaf"])
    p99 = _pct(painted, 0.99)
    verdict = "-" if QUICK else "PASS" if p99 <= TARGET_P99_MS else "BELOW"
    figure(
        "ts -> painted, p99",
        f"{p99:.1f} ms",
        passed=p99 <= TARGET_P99_MS,
        target=f"<= {TARGET_P99_MS:.0f} ms",
    )
    return [
        f"browser latency: {n} StepProgressed at {RATE:.0f}/s for {SECONDS:.0f} s, one drawer "
        f"(page clock - Python clock {offset:+.2f} ms, not subtracted):",
        _figures("ts -> in the DOM", seen),
        _figures("ts -> painted", painted),
        _figures("ts -> next rAF (bound)", next_raf),
        f"  target p99 painted <= {TARGET_P99_MS:.0f} ms: {verdict}",
    ]


def _figures(label: str, values: list[float]) -> str:
    return (
        f"  {label:<24} p50 {_pct(values, 0.5):6.1f} ms  p99 {_pct(values, 0.99):6.1f} ms  "
        f"max {max(values):6.1f} ms"
    )


def _latencies(records: list[Recorded], marks: list[list[float]]) -> list[float]:
    """For each record, ms from its ts to the first mark whose seq is at or past its seq."""
    out: list[float] = []
    i = 0
    for rec in records:
        while i < len(marks) and marks[i][1] < rec.seq:
            i += 1
        if i == len(marks):
            raise RuntimeError(f"seq {rec.seq} was never shown")
        out.append(marks[i][0] - rec.ts.timestamp() * 1000)
    return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# ---- heap ---------------------------------------------------------------------------------------


async def _heap_used(page: Page) -> int:
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("HeapProfiler.collectGarbage")
        await cdp.send("Performance.enable")
        metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
    finally:
        await cdp.detach()
    return int(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))


async def _fill(drawer: Locator, job: Job, count: int, total: int, done: int) -> None:
    """Append `count` progress events in chunks; wait until the drawer shows the last."""
    last = None
    for k in range(done, done + count, CHUNK):
        last = job.append([_progress(i, total) for i in range(k, min(k + CHUNK, done + count))])
        await asyncio.sleep(0.01)  # about 10,000 events a second: the stream's pace, not a flood
    assert last is not None
    seq = (await last)[-1].seq
    await expect(drawer).to_have_attribute("data-last-seq", str(seq), timeout=120_000)


async def _heap(page: Page, drawer: Locator, job: Job) -> list[str]:
    opened = await _heap_used(page)
    await _fill(drawer, job, SHORT_JOB, LONG_JOB, 0)
    short = await _heap_used(page)
    await _fill(drawer, job, LONG_JOB - SHORT_JOB, LONG_JOB, SHORT_JOB)
    long = await _heap_used(page)
    growth = long - short
    verdict = "-" if QUICK else "PASS" if growth < HEAP_TARGET_BYTES else "BELOW"
    figure(
        f"heap growth, {SHORT_JOB:,} to {LONG_JOB:,} events",
        f"{growth / 1024:+.0f} KiB",
        passed=growth < HEAP_TARGET_BYTES,
        target=f"< {HEAP_TARGET_BYTES >> 10} KiB",
    )
    return [
        f"browser heap (JSHeapUsedSize after a forced GC), one drawer on a {LONG_JOB:,}-event job:",
        f"  opened {opened / 2**20:6.2f} MiB | {SHORT_JOB:,} events {short / 2**20:6.2f} MiB | "
        f"{LONG_JOB:,} events {long / 2**20:6.2f} MiB",
        f"  growth from {SHORT_JOB:,} to {LONG_JOB:,} events: {growth / 1024:+.0f} KiB "
        f"({growth / (LONG_JOB - SHORT_JOB):+.1f} B/event); target < {HEAP_TARGET_BYTES >> 10} "
        f"KiB: {verdict}",
    ]


# ---- the run ------------------------------------------------------------------------------------


async def _open_drawer(page: Page, job: Job) -> Locator:
    """Click the job in the page's job list; the drawer that opens on it."""
    await page.goto("/")
    in_list = page.get_by_role("region", name="Jobs").get_by_role("button")
    await in_list.filter(has_text=re.compile(job.job_id)).first.click()
    drawer = page.get_by_role("dialog", name="Render status")
    await expect(drawer).to_have_attribute("data-job-id", job.job_id)
    await expect(drawer).to_have_attribute("data-last-seq", str(job.last_seq))
    return drawer


async def _bench() -> list[str]:
    app = create_app(Settings(data_dir=fresh_dir("browser")), pipeline={})
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    log = app[ENGINE].log
    try:
        async with async_playwright() as pw:
            chromium = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            lines: list[str] = []
            for title, measure in (("latency", _paint_latency), ("heap", _heap)):
                job = Job(log, f"bench {title}")
                await job.start()
                page = await chromium.new_page(base_url=url)
                drawer = await _open_drawer(page, job)
                block = await measure(page, drawer, job)
                print("\n".join(block), flush=True)
                lines += block
                await page.close()
            await chromium.close()
    finally:
        await runner.cleanup()
    return lines


def main() -> None:
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"no Chromium at {CHROMIUM} (make setup installs it)")
    asyncio.run(_bench())
