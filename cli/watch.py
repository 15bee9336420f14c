"""`aura watch`'s live view: one progress bar per step from the job's SSE stream.

When the connection drops, `watch` reconnects by itself with the last event id it saw, so it
misses and repeats nothing. A busy server's 503 says when to come back (Retry-After, at most
RETRY_AFTER_CAP seconds are waited); otherwise the waits double (BACKOFF). On a terminal the
bars are redrawn in place; otherwise each change is one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import aiohttp

from aura.cli.api import Api, ApiError
from aura.cli.bars import Screen, bar
from aura.engine.tools.retry_after import retry_after
from aura.projections.status import DONE_STEP_STATUSES

__all__ = ["BACKOFF", "RECONNECT_FOR", "RETRY_AFTER_CAP", "Progress", "watch"]

#: reconnect delays after a dropped stream, doubling up to the last; give up after RECONNECT_FOR
BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0)
RECONNECT_FOR = 120.0
#: the longest wait a server's Retry-After gets (a silly or hostile value must not stall watch)
RETRY_AFTER_CAP = 60.0

Sleep = Callable[[float], Awaitable[None]]


class Progress:
    """One bar per step, redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, job: dict[str, Any], out: TextIO) -> None:
        self.screen = Screen(out)
        self.status = job["status"]
        self.steps = {
            s["name"]: [s["status"], s["progressPct"], s["etaSeconds"]] for s in job["steps"]
        }
        self.notes: list[str] = []
        #: the id of the last event applied: where a reconnect resumes
        self.last: int | None = None
        #: a retried job's stream replays its earlier attempts first: those are not shown
        self.attempt = job["attempt"]
        self.caught_up = False

    def apply(self, event: str, data: dict[str, Any]) -> None:
        if not self.caught_up:
            if data.get("attempt", 0) < self.attempt:  # progress carries none: skipped too
                return None
            self.caught_up = True
        step = self.steps.get(data.get("step") or "")
        if event == "step-progress" and step is not None:
            step[1], step[2] = data["progressPct"], data["etaSeconds"]
            return self.draw()
        if event in ("step-status", "step-error") and step is not None:
            # a step done is full, and stays so when it reruns until it reports progress
            step[0], step[2] = data["status"], None
            step[1] = 100.0 if step[0] in DONE_STEP_STATUSES else step[1]
        if event.startswith("job-") and "status" in data:
            self.status = data["status"]
        noted = event in ("step-error", "job-failed", "job-warning")
        if noted:
            self.notes.append(_note(event, data))
        if self.screen.tty:
            return self.draw()
        # one line per change: the step's status for a step's event, else the job's
        shown = step[0] if step is not None and event.startswith("step-") else self.status
        label = data["type"] + (f" {data['step']}" if data.get("step") else "")
        self.screen.line(f"{label}: {shown}")
        if noted:
            self.screen.line(f"  {self.notes[-1]}")
        return None

    def draw(self) -> None:
        """Redraw the bars and notes in place (on a terminal; nothing otherwise)."""
        if not self.screen.tty:
            return
        lines = [f"job {self.status}"] + [bar(name, *s) for name, s in self.steps.items()]
        self.screen.redraw(lines + self.notes)


def _note(event: str, data: dict[str, Any]) -> str:
    if event == "job-warning":
        return f"warning {data['code']}: {data['message']}"
    error = data["error"]
    return f"error {error['code']}: {error['message']} -> {error['remediation']}"


async def watch(api: Api, job_id: str, out: TextIO, *, sleep: Sleep = asyncio.sleep) -> int:
    """Follow the job until its stream ends; exit 0 if it succeeded, 1 otherwise. `sleep`
    waits between reconnects."""
    progress = Progress(await api.job("GET", f"/api/jobs/{job_id}"), out)
    progress.draw()
    failures = 0
    deadline: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            if await _follow_once(api, job_id, progress):
                break
            failures, deadline = 0, None
        except (aiohttp.ClientError, TimeoutError) as e:
            # Dropped: reconnect after the last id applied (kept even when the drop raised).
            deadline = deadline or loop.time() + RECONNECT_FOR
            if loop.time() > deadline:
                if isinstance(e, aiohttp.ClientResponseError) and e.status == 503:
                    raise ApiError(f"{api.url} stayed busy (ServerBusy); try again later") from None
                raise api.unreachable(e) from None
            await sleep(_wait(e, failures))
            failures += 1
    return _outcome(await api.job("GET", f"/api/jobs/{job_id}"), out)


def _wait(error: Exception, failures: int) -> float:
    """Seconds to wait before reconnecting: what a busy server's Retry-After asks (capped),
    else the backoff after `failures` failures in a row."""
    if isinstance(error, aiohttp.ClientResponseError) and error.headers is not None:
        asked = retry_after(error.headers.get("Retry-After"), RETRY_AFTER_CAP)
        if asked is not None:
            return asked
    return BACKOFF[min(failures, len(BACKOFF) - 1)]


async def _follow_once(api: Api, job_id: str, progress: Progress) -> bool:
    """One connection, from `progress.last`; True when the stream is over for good (204)."""
    async with api.job_events(job_id, progress.last) as messages:
        if messages is None:
            return True
        async for seq, event, data in messages:
            progress.apply(event, data)
            progress.last = seq
    return False


def _outcome(job: dict[str, Any], out: TextIO) -> int:
    if job["status"] == "Succeeded":
        output = job["output"]
        print(
            f"done: {output['videoPath']} ({output['sizeBytes']} bytes, "
            f"{output['durationSeconds']:.1f} s)",
            file=out,
            flush=True,
        )
        return 0
    for error in job["errors"][-1:]:
        print(
            f"{job['status']}: {error['code']}: {error['message']}\n  {error['remediation']}",
            file=out,
            flush=True,
        )
    if not job["errors"]:
        print(job["status"], file=out, flush=True)
    return 1
