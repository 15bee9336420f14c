"""A real render through the HTTP API: create, follow SSE to job-completed, download the video."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from aura.http.app import create_app
from aura.tests.e2e.helpers import follow, log_lines

#: two short lines at draft quality: a real render of a few seconds
BODY = {
    "preset": "default",
    "brief": {"title": "HTTP test", "script": ["One short line.", "And another."]},
    "options": {"quality": "draft", "encoder": "x264"},
}


@pytest.mark.slow
async def test_render_followed_live_and_downloaded_with_ranges(
    aiohttp_client: Any, settings: Any
) -> None:
    client = await aiohttp_client(create_app(settings))  # the default pipeline: real ffmpeg
    resp = await client.post("/api/jobs", json=BODY)
    assert resp.status == 201
    job_id = (await resp.json())["jobId"]
    events = await follow(client, job_id)
    assert events[-1].event == "job-completed", events[-1]
    lines = await log_lines(client, job_id)
    assert [(e.id, e.data["type"]) for e in events] == [(x["seq"], x["type"]) for x in lines]
    started = [e.data["step"] for e in events if e.data["type"] == "StepStarted"]
    assert started == ["preflight", "narration", "broll", "subtitles", "mux"]
    output = events[-1].data["output"]
    assert output["durationSeconds"] > 0
    url = f"/api/jobs/{job_id}/output"
    whole = await client.get(url)
    assert whole.status == 200 and whole.headers["Content-Type"] == "video/mp4"
    video = await whole.read()
    assert len(video) == output["sizeBytes"]
    assert hashlib.sha256(video).hexdigest() == output["sha256"]
    assert video[4:8] == b"ftyp"
    part = await client.get(url, headers={"Range": "bytes=0-1023"})
    assert part.status == 206 and await part.read() == video[:1024]
    assert part.headers["Content-Range"] == f"bytes 0-1023/{len(video)}"
    reconnect = await client.get(
        f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": str(events[-1].id)}
    )
    assert reconnect.status == 204
