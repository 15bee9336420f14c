"""`GET /metrics` of a real server, parsed as Prometheus does: what a render, a queue and open
streams show, each server its own registry, and the token guarding it like the API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from aura.engine.config.settings import Settings
from aura.http.app import create_app
from aura.http.openapi import METRICS_MEDIA_TYPE
from aura.http.sse import StreamConfig
from aura.store.log import Durability
from aura.tests.e2e.conftest import AppFactory
from aura.tests.e2e.helpers import TINY_STEPS, TinyPipeline, follow, submit
from aura.tests.e2e.sse_client import read_events
from aura.tests.e2e.test_http_api import problem
from aura.tests.e2e.test_http_openapi_security import TOKEN
from aura.tests.e2e.test_http_render import BODY

Client = TestClient[web.Request, web.Application]
#: the sample preset's steps, in order
SAMPLE_STEPS = ("preflight", "narration", "broll", "subtitles", "mux")
#: seconds a test waits for a condition it expects
WAIT = 20.0


async def scrape(client: Client, headers: dict[str, str] | None = None) -> dict[str, Metric]:
    """The server's metric families, by name, parsed by prometheus_client."""
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith(METRICS_MEDIA_TYPE)
    return {m.name: m for m in text_string_to_metric_families(await resp.text())}


def sample(families: dict[str, Metric], name: str, **labels: str) -> float:
    """The value of the sample `name` (a family's name, or one of a histogram's `_count`,
    `_sum`, `_bucket`) with exactly `labels`."""
    family = families[name.removesuffix("_count").removesuffix("_sum").removesuffix("_total")]
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


def assert_histogram_adds_up(families: dict[str, Metric], name: str) -> None:
    """The buckets count up to `+Inf`, which is `_count`, as Prometheus requires."""
    buckets = [s for s in families[name].samples if s.name == f"{name}_bucket"]
    counts = [s.value for s in buckets]
    assert buckets[-1].labels["le"] == "+Inf" and counts == sorted(counts), buckets
    assert counts[-1] == sample(families, f"{name}_count")


async def wait_for_sample(
    client: Client, name: str, expected: float, **labels: str
) -> dict[str, Metric]:
    """Scrape until the sample reads `expected` (a server notices a closed stream a little
    later); the last scrape."""
    deadline = time.monotonic() + WAIT
    while True:
        families = await scrape(client)
        if sample(families, name, **labels) == expected or time.monotonic() > deadline:
            assert sample(families, name, **labels) == expected
            return families
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_sample_render_is_counted_by_status_step_append_and_stream(
    aiohttp_client: Any, settings: Settings
) -> None:
    client: Client = await aiohttp_client(create_app(settings))  # real ffmpeg, espeak-ng
    before = await scrape(client)
    assert sample(before, "aura_sse_events_delivered_total", stream="job") == 0
    resp = await client.post("/api/jobs", json=BODY)
    assert resp.status == 201
    job_id = (await resp.json())["jobId"]
    async with client.get(f"/api/jobs/{job_id}/events") as stream:
        first = await read_events(stream, 1)
        during = await scrape(client)
        assert sample(during, "aura_sse_streams_open", stream="job") == 1
        events = first + await read_events(stream)
    assert events[-1].event == "job-completed", events[-1]
    after = await wait_for_sample(client, "aura_sse_streams_open", 0, stream="job")
    assert sample(after, "aura_sse_events_delivered_total", stream="job") == len(events)
    assert sample(after, "aura_jobs", status="Succeeded") == 1
    assert sample(after, "aura_jobs", status="Running") == 0
    for step in SAMPLE_STEPS:
        assert sample(after, "aura_step_duration_seconds_count", step=step) == 1, step
        assert sample(after, "aura_step_duration_seconds_sum", step=step) > 0, step
    appends = sample(after, "aura_append_latency_seconds_count")
    assert appends > 0 and sample(after, "aura_append_latency_seconds_sum") > 0
    # each append counted once in each: the latency histogram counts appends, not commits
    assert sample(after, "aura_group_commit_appends_sum") == appends
    assert 0 < sample(after, "aura_group_commit_appends_count") <= appends
    for name in ("aura_append_latency_seconds", "aura_group_commit_appends"):
        assert_histogram_adds_up(after, name)


@pytest.mark.both_backends
async def test_queue_depth_and_open_streams_follow_the_jobs_and_clients(
    make_client: AppFactory, tiny: TinyPipeline
) -> None:
    # a short ping interval: a parked stream finds its client gone at its next ping
    client = await make_client(stream=StreamConfig(ping_interval=0.2, retry_ms=500))
    gate = tiny.gate("prepare")
    first = await submit(client)
    await asyncio.wait_for(gate.entered.wait(), WAIT)
    second = await submit(client)  # max_concurrent_jobs is 1: it waits for a slot
    families = await scrape(client)
    assert sample(families, "aura_queue_depth") == 1
    assert sample(families, "aura_job_list_rebuilding") == 0
    assert sample(families, "aura_jobs", status="Queued") == 1
    assert sample(families, "aura_jobs", status="Running") == 1
    assert sample(families, "aura_sse_streams_open", stream="job") == 0
    async with client.get(f"/api/jobs/{second['jobId']}/events") as stream:
        assert [e.event for e in await read_events(stream, 1)] == ["job-status"]
        async with client.get("/api/events") as job_list:
            assert job_list.status == 200
            families = await scrape(client)
            assert sample(families, "aura_sse_streams_open", stream="job") == 1
            assert sample(families, "aura_sse_streams_open", stream="list") == 1
            assert sample(families, "aura_sse_events_delivered_total", stream="job") == 1
    # both clients went away while their streams were idle
    await wait_for_sample(client, "aura_sse_streams_open", 0, stream="job")
    await wait_for_sample(client, "aura_sse_streams_open", 0, stream="list")
    gate.open()
    events = await follow(client, second["jobId"])
    await follow(client, first["jobId"])
    families = await scrape(client)
    assert sample(families, "aura_queue_depth") == 0
    assert sample(families, "aura_jobs", status="Succeeded") == 2
    assert sample(families, "aura_jobs", status="Queued") == 0
    for step in TINY_STEPS:
        assert sample(families, "aura_step_duration_seconds_count", step=step) == 2, step
    delivered = sample(families, "aura_sse_events_delivered_total", stream="job")
    assert delivered >= 1 + len(events)


async def test_an_api_only_node_on_postgres_counts_the_queue_every_worker_shares(
    make_client: AppFactory, tmp_path: Path, pg_url: str
) -> None:
    api = Settings(data_dir=tmp_path / "api", database_url=pg_url, runs_jobs=False)
    client = await make_client(settings=api)  # as `aura serve --no-worker`: no worker runs
    for _ in range(2):
        await submit(client)
    assert sample(await scrape(client), "aura_queue_depth") == 2


async def test_each_server_has_its_own_registry(make_client: AppFactory, tmp_path: Path) -> None:
    normal = await make_client(settings=Settings(data_dir=tmp_path / "a"))
    full = await make_client(settings=Settings(data_dir=tmp_path / "b", durability=Durability.FULL))
    job = await submit(full)  # both write paths: FULL commits on the writer's thread
    await follow(full, job["jobId"])
    on_full, on_normal = await scrape(full), await scrape(normal)
    assert sample(on_full, "aura_jobs", status="Succeeded") == 1
    assert sample(on_normal, "aura_jobs", status="Succeeded") == 0
    assert sample(on_full, "aura_append_latency_seconds_count") > 0
    assert_histogram_adds_up(on_full, "aura_append_latency_seconds")
    assert_histogram_adds_up(on_full, "aura_group_commit_appends")
    assert sample(on_normal, "aura_append_latency_seconds_count") == 0
    assert sample(on_full, "aura_step_duration_seconds_count", step="render") == 1
    assert "aura_step_duration_seconds_count" not in {
        s.name for s in on_normal["aura_step_duration_seconds"].samples
    }


async def test_metrics_need_the_token_like_the_api(make_client: AppFactory) -> None:
    guarded = await make_client(token=TOKEN)
    await problem(await guarded.get("/metrics"), 401, "Unauthorized")
    await problem(
        await guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}),
        401,
        "Unauthorized",
    )
    families = await scrape(guarded, {"Authorization": f"Bearer {TOKEN}"})
    assert sample(families, "aura_queue_depth") == 0


async def test_without_a_token_metrics_answer_only_loopback_hosts(client: Client) -> None:
    foreign = {"Host": "aura.example:8765"}
    await problem(await client.get("/metrics", headers=foreign), 403, "Forbidden")
    assert (await client.get("/metrics")).status == 200
