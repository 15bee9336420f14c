"""Helpers of the HTTP tests: a tiny real pipeline, and calls a client makes (submit, follow)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from aura.engine.errors.taxonomy import AuraError
from aura.engine.run.context import Step, StepContext
from aura.engine.run.decide import PROGRESS_MIN_INTERVAL
from aura.projections.events import Artifact
from aura.tests.e2e.sse_client import SseEvent, read_events

Client = TestClient[web.Request, web.Application]

TINY_STEPS = ("prepare", "render", "publish")
#: just above the engine's progress throttle (aura.engine.run.decide.PROGRESS_MIN_INTERVAL)
PROGRESS_PACE = PROGRESS_MIN_INTERVAL + 0.01
VIDEO_BYTES = bytes(range(256)) * 64  # 16 KiB, distinct bytes so ranges are checkable


class Gate:
    """Holds a step until the test opens it; `entered` tells the test the step is waiting."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()

    def open(self) -> None:
        self.opened.set()


class TinyPipeline:
    """Real steps: each reports `ticks` progress events; `publish` writes a small video file."""

    def __init__(self, ticks: int = 3) -> None:
        self.ticks = ticks
        self.gates: dict[str, Gate] = {}
        #: step -> attempts on which it fails
        self.fail: dict[str, set[int]] = {}
        #: where `publish` records its output (relative paths are inside the job folder)
        self.output_path: Path | None = None
        #: steps whose ticks are paced past the engine's progress throttle, so each is recorded
        self.paced: set[str] = set()

    def gate(self, step: str) -> Gate:
        gate = self.gates[step] = Gate()
        return gate

    def steps(self) -> Mapping[str, Step]:
        return {name: self._step(name) for name in TINY_STEPS}

    def _step(self, name: str) -> Callable[[StepContext], Awaitable[list[Artifact]]]:
        async def step(ctx: StepContext) -> list[Artifact]:
            gate = self.gates.get(name)
            if gate is not None:
                gate.entered.set()
                await gate.opened.wait()
            for i in range(1, self.ticks + 1):
                if name in self.paced:
                    await asyncio.sleep(PROGRESS_PACE)
                await ctx.progress(
                    100.0 * i / (self.ticks + 1), f"{name} {i}", float(self.ticks - i)
                )
            if ctx.attempt in self.fail.get(name, set()):
                raise AuraError.of("FFmpegFailedExitCode:1", f"{name} failed on purpose")
            if name != "publish":
                return []
            return [self._write_video(ctx)]

        return step

    def _write_video(self, ctx: StepContext) -> Artifact:
        path = self.output_path or ctx.work_dir / "video.mp4"
        target = ctx.work_dir / path  # an absolute `path` stays itself
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(VIDEO_BYTES)
        return Artifact(
            name="clip",  # not "video": that one the engine probes with ffprobe
            path=str(path),
            size_bytes=len(VIDEO_BYTES),
            sha256=hashlib.sha256(VIDEO_BYTES).hexdigest(),
        )


async def submit(client: Client, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/jobs", json=body or {"preset": "sample-hello-youtube"})
    assert resp.status == 201, await resp.text()
    job: dict[str, Any] = await resp.json()
    return job


async def follow(
    client: Client,
    job_id: str,
    *,
    after: int | None = None,
    limit: int | None = None,
    header: bool = True,
) -> list[SseEvent]:
    """The stream's events (all of them, until it ends, or the first `limit`)."""
    headers = {} if after is None or not header else {"Last-Event-ID": str(after)}
    params = {} if after is None or header else {"lastEventId": str(after)}
    async with client.get(f"/api/jobs/{job_id}/events", headers=headers, params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await read_events(resp, limit)


async def log_lines(client: Client, job_id: str) -> list[Any]:
    resp = await client.get(f"/api/jobs/{job_id}/log")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in (await resp.text()).splitlines()]


async def finished_job(client: Client) -> dict[str, Any]:
    """Submit a job and wait (on its stream) until it has ended."""
    job = await submit(client)
    await follow(client, job["jobId"])
    return job
