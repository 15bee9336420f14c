"""The live stream: names and data of every message, exact resume, end and 204, fan-out."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aura.cli import watch as cli_watch
from aura.cli.api import Api, ApiError
from aura.cli.watch import watch
from aura.engine.config.settings import Settings
from aura.engine.errors.taxonomy import make_error
from aura.http.fanout import JobFeed, Listener
from aura.http.frames import Frame
from aura.http.keys import ENGINE, FANOUT
from aura.http.sse import StreamConfig
from aura.http.wire import WIRE_NAMES
from aura.projections.events import (
    Event,
    JobCreated,
    JobFailed,
    JobRetryRequested,
    JobStarted,
    JobSucceeded,
    Output,
    StepProgressed,
    StepStarted,
)
from aura.store.errors import CorruptEvent
from aura.store.log import DB_FILE_NAME, EventLog
from aura.tests.e2e.helpers import (
    TinyPipeline,
    finished_job,
    follow,
    log_lines,
    submit,
)
from aura.tests.e2e.sse_client import SseEvent, read_events

pytestmark = pytest.mark.both_backends

TS_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"


def as_log(events: list[SseEvent]) -> list[tuple[int, str]]:
    return [(e.id, e.data["type"]) for e in events]


def log_pairs(lines: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(line["seq"], line["type"]) for line in lines]


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    """Wait, bounded, for a state the server reaches by itself (a disconnect it notices): there
    is no event to await across the socket, so poll the condition, never a fixed sleep."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - the condition is the server's, not ours
            await asyncio.sleep(0.01)


async def test_follows_a_job_to_job_completed_and_the_stream_ends(
    client: Any, tiny: TinyPipeline
) -> None:
    tiny.paced = {"render"}
    job = await submit(client)
    events = await follow(client, job["jobId"])
    lines = await log_lines(client, job["jobId"])
    assert as_log(events) == log_pairs(lines)
    assert events[0].event == "job-status" and events[0].data["status"] == "Queued"
    assert events[-1].event == "job-completed"
    assert events[-1].data["output"]["sizeBytes"] > 0
    names = {e.event for e in events}
    assert {"job-status", "step-status", "step-progress", "job-completed"} <= names
    wire_name = {cls.__name__: name for cls, name in WIRE_NAMES.items()}
    for e in events:
        assert e.event == wire_name[e.data["type"]]
        assert e.data["jobId"] == job["jobId"]
        assert re.match(TS_PATTERN, e.data["ts"])
        if e.event == "step-progress":
            assert {"step", "progressPct", "etaSeconds"} <= e.data.keys()
        if e.event == "step-status":
            assert {"step", "status", "attempt"} <= e.data.keys()
        if e.event == "job-status":
            assert {"status", "attempt"} <= e.data.keys()
    assert [line["ts"] for line in lines] == [e.data["ts"] for e in events]


async def test_resume_after_any_k_events_gives_exactly_the_log(
    client: Any, tiny: TinyPipeline
) -> None:
    tiny.paced = {"render", "publish"}  # more events: every progress tick is recorded
    job = await finished_job(client)
    job_id = job["jobId"]
    expected = log_pairs(await log_lines(client, job_id))
    full = await follow(client, job_id)
    rng = random.Random(5)
    ks = sorted({0, 1, len(full) - 1, *(rng.randrange(len(full)) for _ in range(30))})
    for i, k in enumerate(ks):
        first = await follow(client, job_id, limit=k) if k else []
        after = first[-1].id if first else 0
        rest = await follow(client, job_id, after=after, header=i % 2 == 0)
        assert as_log(first + rest) == expected, f"k={k}"
        assert [e.data for e in first + rest] == [e.data for e in full]


async def test_reconnect_at_or_after_the_end_gets_204(client: Any) -> None:
    job = await finished_job(client)
    last = (await log_lines(client, job["jobId"]))[-1]["seq"]
    for after, how in ((last, "header"), (last + 1000, "header"), (last, "query")):
        headers = {"Last-Event-ID": str(after)} if how == "header" else {}
        params = {"lastEventId": str(after)} if how == "query" else {}
        resp = await client.get(f"/api/jobs/{job['jobId']}/events", headers=headers, params=params)
        assert resp.status == 204
    # the header wins over the query a browser keeps in its URL
    resp = await client.get(
        f"/api/jobs/{job['jobId']}/events?lastEventId=1", headers={"Last-Event-ID": str(last)}
    )
    assert resp.status == 204


async def test_malformed_last_event_id_is_a_400_problem(client: Any) -> None:
    job = await finished_job(client)
    for bad in ("abc", "-1", "1.5", "9" * 40, "\uff11\uff12"):
        resp = await client.get(f"/api/jobs/{job['jobId']}/events", headers={"Last-Event-ID": bad})
        assert resp.status == 400
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        body = await resp.json()
        assert body["code"] == "InvalidInput:Last-Event-ID"
    resp = await client.get(f"/api/jobs/{job['jobId']}/events?lastEventId=x")
    assert (await resp.json())["code"] == "InvalidInput:lastEventId"


async def test_an_id_beyond_the_log_is_a_400_while_the_job_runs(
    client: Any, tiny: TinyPipeline
) -> None:
    gate = tiny.gate("render")
    job = await submit(client)
    await gate.entered.wait()
    newest = (await (await client.get("/api/health")).json())["lastSeq"]
    url = f"/api/jobs/{job['jobId']}/events"
    try:
        # resuming after an id never sent would skip the job's next events and its end
        resp = await client.get(url, headers={"Last-Event-ID": str(newest + 5)})
        assert resp.status == 400  # before reading: a stream's body would not end
        assert (await resp.json())["code"] == "InvalidInput:Last-Event-ID"
        resp = await client.get(url, params={"lastEventId": str(newest + 5)})
        assert resp.status == 400
        assert (await resp.json())["code"] == "InvalidInput:lastEventId"
    finally:
        gate.open()
    rest = await follow(client, job["jobId"], after=newest)
    assert rest[-1].event == "job-completed"
    assert all(e.id > newest for e in rest)


async def test_unknown_job_stream_is_404(client: Any) -> None:
    resp = await client.get("/api/jobs/nope/events")
    assert resp.status == 404
    assert (await resp.json())["code"] == "JobNotFound"


async def test_live_stream_resumes_exactly_while_the_job_runs(
    client: Any, tiny: TinyPipeline
) -> None:
    gate = tiny.gate("render")
    job = await submit(client)
    job_id = job["jobId"]
    await gate.entered.wait()
    first = await follow(client, job_id, limit=4)
    gate.open()
    rest = await follow(client, job_id, after=first[-1].id)
    assert as_log(first + rest) == log_pairs(await log_lines(client, job_id))
    assert rest[-1].event == "job-completed"


async def test_a_failed_job_ends_the_stream_and_a_retry_continues_it(
    client: Any, tiny: TinyPipeline
) -> None:
    tiny.fail["render"] = {1}
    job = await submit(client)
    job_id = job["jobId"]
    first = await follow(client, job_id)
    assert first[-1].event == "job-failed"
    assert any(e.event == "step-error" and e.data["step"] == "render" for e in first)
    error = first[-1].data["error"]
    assert error["code"] == "FFmpegFailedExitCode:1" and error["remediation"]
    resp = await client.get(
        f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": str(first[-1].id)}
    )
    assert resp.status == 204
    resp = await client.post(f"/api/jobs/{job_id}/retry")
    assert resp.status == 202
    rest = await follow(client, job_id, after=first[-1].id, header=False)
    assert rest[0].data["type"] == "JobRetryRequested"
    assert rest[-1].event == "job-completed"
    assert as_log(first + rest) == log_pairs(await log_lines(client, job_id))
    # a fresh stream replays both attempts and ends only at the job's current end
    assert as_log(await follow(client, job_id)) == as_log(first + rest)


async def test_two_hundred_concurrent_subscribers_all_receive_every_event(
    client: Any, tiny: TinyPipeline
) -> None:
    gate = tiny.gate("prepare")
    job = await submit(client)
    job_id = job["jobId"]
    await gate.entered.wait()
    url = client.make_url(f"/api/jobs/{job_id}/events")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        responses = await asyncio.gather(*(session.get(url) for _ in range(200)))
        fanout = client.app[FANOUT]
        await wait_for(lambda: fanout.listener_count == 200)
        assert len(fanout.feeds) == 1  # one store subscription serves them all
        gate.open()
        results = await asyncio.gather(*(read_events(r) for r in responses))
        for r in responses:
            r.release()
    expected = log_pairs(await log_lines(client, job_id))
    assert expected[-1][1] == "JobSucceeded"
    for events in results:
        assert as_log(events) == expected


# a job made by hand, Running with no worker's lease: on PostgreSQL the server's claiming runner
# takes it for an interrupted one and resumes it (aura worker), racing the test's own appends
@pytest.mark.sqlite_only
async def test_a_client_that_stops_reading_still_gets_every_event_in_order(client: Any) -> None:
    """Live frames go straight to a client's socket while it takes them; once the client stops
    reading and its socket fills, they queue for its handler, which writes them (in order,
    after what went out directly) as the socket drains."""
    log = client.app[ENGINE].log
    job_id = "slow-reader"
    created = JobCreated(preset="default", steps=("render",), correlation_id=job_id)
    version = len(await log.append(job_id, [created, JobStarted(), StepStarted(step="render")], 0))
    async with client.get(f"/api/jobs/{job_id}/events") as resp:
        first = await read_events(resp, limit=3)  # the backlog: the stream is live now
        (listener,) = client.app[FANOUT].feeds[job_id].listeners
        message = "x" * 4000
        # Not read by the client from here on: aiohttp stops reading its socket after a few
        # dozen KiB, then the kernel's buffers fill, then the server's transport's.
        for _ in range(100):  # bounded: 40 MB of events at most (about 6 MB fill it here)
            events = [StepProgressed(step="render", pct=50.0, message=message)] * 100
            version += len(await log.append(job_id, events, version))
            if listener.pending or listener.overflowed:
                break  # the socket is full: frames now wait for the handler
        assert listener.pending or listener.overflowed
        output = Output(video_path="v.mp4", size_bytes=1, duration_seconds=1.0, sha256="0")
        await log.append(job_id, [JobSucceeded(output=output)], version)
        rest = await read_events(resp)
    assert rest[-1].event == "job-completed"
    assert as_log(first + rest) == log_pairs(await log_lines(client, job_id))


# a job made by hand, Running with no worker's lease: on PostgreSQL the server's claiming runner
# takes it for an interrupted one and resumes it (aura worker), racing the test's own appends
@pytest.mark.sqlite_only
async def test_an_http_1_0_client_gets_live_frames_unchunked(client: Any) -> None:
    """HTTP/1.0 has no chunked encoding: the stream is the raw frames until the connection
    closes, live frames written straight from the feed included."""
    log = client.app[ENGINE].log
    job_id = "old-client"
    created = JobCreated(preset="default", steps=("render",), correlation_id=job_id)
    await log.append(job_id, [created, JobStarted()], 0)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(f"GET /api/jobs/{job_id}/events HTTP/1.0\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
        await reader.readuntil(b"id: 2\n")  # the backlog: the stream is live now
        await reader.readuntil(b"\n\n")
        (listener,) = client.app[FANOUT].feeds[job_id].listeners
        assert listener.direct is not None  # parked: the next frame goes straight out
        await log.append(job_id, [StepStarted(step="render")], 2)
        frame = await reader.readuntil(b"\n\n")  # right after the last one: no chunk size
        head, _, data = frame.partition(b"data: ")
        assert head == b"id: 3\nevent: step-status\n"
        assert json.loads(data)["type"] == "StepStarted"
    finally:
        writer.close()


# a job made by hand, Running with no worker's lease: on PostgreSQL the server's claiming runner
# takes it for an interrupted one and resumes it (aura worker), racing the test's own appends
@pytest.mark.sqlite_only
async def test_a_live_terminal_event_ends_the_stream_unless_a_retry_follows_it(
    client: Any,
) -> None:
    """Terminal frames go straight from the feed too: one followed by a retry in the same
    commit keeps the stream open; the next, with nothing after it, is the stream's last."""
    log = client.app[ENGINE].log
    job_id = "live-end"
    created = JobCreated(preset="default", steps=("render",), correlation_id=job_id)
    await log.append(job_id, [created, JobStarted()], 0)
    async with client.get(f"/api/jobs/{job_id}/events") as resp:
        first = await read_events(resp, limit=2)  # the backlog: the stream is live now
        (listener,) = client.app[FANOUT].feeds[job_id].listeners
        assert listener.direct is not None
        failed = JobFailed(error=make_error("FFmpegNotFound", "no ffmpeg"))
        await log.append(job_id, [failed, JobRetryRequested(attempt=2)], 2)
        middle = await read_events(resp, limit=2)
        assert [e.event for e in middle] == ["job-failed", "job-status"]
        output = Output(video_path="v.mp4", size_bytes=1, duration_seconds=1.0, sha256="0")
        done = [JobStarted(attempt=2), JobSucceeded(output=output, attempt=2)]
        await log.append(job_id, done, 4)
        rest = await read_events(resp)  # to the end of the body
    assert listener.ended  # written from the feed, ended by the handler
    assert [e.event for e in rest] == ["job-status", "job-completed"]
    assert as_log(first + middle + rest) == log_pairs(await log_lines(client, job_id))


async def test_a_vanished_client_frees_its_subscription(client: Any, tiny: TinyPipeline) -> None:
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    log = client.app[ENGINE].log
    base = log.subscriber_count
    url = client.make_url(f"/api/jobs/{job['jobId']}/events")
    async with aiohttp.ClientSession() as session:
        resp = await session.get(url)
        assert len(await read_events(resp, limit=2)) == 2
        assert client.app[FANOUT].listener_count == 1
        await wait_for(lambda: log.subscriber_count == base + 1)
        resp.close()  # drop the connection without reading further
    await wait_for(lambda: client.app[FANOUT].listener_count == 0)
    await wait_for(lambda: log.subscriber_count == base)
    assert client.app[FANOUT].feeds == {}
    gate.open()


async def test_streams_past_the_limit_are_refused_with_503_until_one_closes(
    make_client: Any, tiny: TinyPipeline
) -> None:
    client = await make_client(stream=StreamConfig(max_streams=2))
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    url = client.make_url(f"/api/jobs/{job['jobId']}/events")
    fanout = client.app[FANOUT]
    async with aiohttp.ClientSession() as session:
        first, second = await session.get(url), await session.get(url)
        assert (first.status, second.status) == (200, 200)
        refused = await session.get(url)
        assert refused.status == 503 and refused.headers["Retry-After"] == "5"
        body = await refused.json(content_type=None)
        assert body["code"] == "ServerBusy" and body["remediation"]
        assert fanout.listener_count == 2  # the refused one never joined
        first.close()
        await wait_for(lambda: fanout.listener_count == 1)
        again = await session.get(url)
        assert again.status == 200
        assert [e.event for e in await read_events(again, limit=1)] == ["job-status"]
        again.close()
        second.close()
    await wait_for(lambda: fanout.listener_count == 0)
    gate.open()


async def test_aura_watch_waits_out_a_busy_server(make_client: Any, tiny: TinyPipeline) -> None:
    client = await make_client(stream=StreamConfig(max_streams=1))
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    statuses: list[int] = []

    async def answered(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
        statuses.append(params.response.status)

    tracing = aiohttp.TraceConfig()
    tracing.on_request_end.append(answered)
    async with aiohttp.ClientSession(trace_configs=[tracing]) as session:
        holder = await session.get(client.make_url(f"/api/jobs/{job['jobId']}/events"))
        assert holder.status == 200  # the only stream the server allows
        out = io.StringIO()
        api = Api(session, str(client.make_url("")).rstrip("/"))
        watching = asyncio.create_task(watch(api, job["jobId"], out))
        await wait_for(lambda: 503 in statuses)  # refused: it keeps trying
        assert not watching.done()
        holder.close()
        gate.open()
        async with asyncio.timeout(30):
            assert await watching == 0  # followed to the end once a stream was free
    assert "JobSucceeded" in out.getvalue()


async def test_aura_watch_gives_up_on_a_server_that_stays_busy(
    make_client: Any, tiny: TinyPipeline, monkeypatch: Any
) -> None:
    monkeypatch.setattr(cli_watch, "RECONNECT_FOR", 0.5)  # instead of two minutes
    client = await make_client(stream=StreamConfig(max_streams=1))
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    async with aiohttp.ClientSession() as session:
        holder = await session.get(client.make_url(f"/api/jobs/{job['jobId']}/events"))
        api = Api(session, str(client.make_url("")).rstrip("/"))
        with pytest.raises(ApiError, match="stayed busy"):
            async with asyncio.timeout(30):
                await watch(api, job["jobId"], io.StringIO())
        holder.close()
    gate.open()


async def test_idle_streams_get_a_keep_alive_comment_every_interval(
    make_client: Any, tiny: TinyPipeline
) -> None:
    interval = 0.5
    client = await make_client(stream=StreamConfig(ping_interval=interval, retry_ms=1234))
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    clock = asyncio.get_running_loop().time
    async with client.get(f"/api/jobs/{job['jobId']}/events") as resp:
        assert resp.headers["X-Accel-Buffering"] == "no"
        assert resp.headers["Cache-Control"] == "no-cache"
        opened = clock()  # the backlog follows at once; then the stream is idle
        seen: list[bytes] = []
        pings: list[float] = []
        async with asyncio.timeout(20 * interval):  # bounded: a stream that never pings fails
            while len(pings) < 3:
                seen.append(await resp.content.readline())
                if seen[-1] == b": ping\n":
                    pings.append(clock())
        assert b"retry: 1234\n" in seen
    # no ping before half an interval of silence (a late visit only lengthens a gap), none
    # later than an interval (loosely: twice, as a busy machine delays visits; the rule itself
    # is tested on Listener.tick alone)
    gaps = [later - earlier for earlier, later in itertools.pairwise([opened, *pings])]
    assert all(interval / 2 <= gap < 2 * interval for gap in gaps), gaps
    gate.open()


async def test_a_listener_owes_a_ping_after_two_idle_visits_and_a_push_starts_over() -> None:
    listener = Listener()
    listener.tick()
    assert not listener.ping_due and not listener.wake.is_set()
    listener.tick()  # visits come twice an interval: idle for a whole one, whenever it went quiet
    assert listener.ping_due and listener.wake.is_set()
    assert await listener.next_batch() is None  # None: write a ping
    listener.tick()
    listener.push(Frame(1, b"id: 1\n\n", terminal=False))  # news: the idle count starts over
    listener.tick()
    assert not listener.ping_due
    listener.tick()
    assert listener.ping_due


def insert_corrupt_row(data_dir: Path, job_id: str, seq: int) -> None:
    """A row of the job that does not decode, written behind the server's back. Version 0: the
    job's own reads (versions after 0) and a resume by version skip it; a read of the job's events
    after a seq that is not the job's (a first connection: after 0) meets it."""
    with contextlib.closing(sqlite3.connect(data_dir / DB_FILE_NAME)) as db, db:
        db.execute(
            "INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data)"
            " VALUES (?, ?, 0, 'StepProgress', 'prepare', 1, '2026-01-01T00:00:00.000000Z', ?)",
            (seq, job_id, "{not json"),
        )


@pytest.mark.sqlite_only
async def test_a_corrupt_row_fails_only_the_stream_whose_backlog_meets_it(
    make_client: Any, tiny: TinyPipeline, settings: Settings, caplog: Any
) -> None:
    client = await make_client()
    gate = tiny.gate("prepare")
    job_id = (await submit(client))["jobId"]
    await gate.entered.wait()
    url = f"/api/jobs/{job_id}/events"
    before = await log_lines(client, job_id)
    async with client.get(url) as live:  # following since before the row was written
        first = await read_events(live, limit=len(before))
        insert_corrupt_row(settings.data_dir, job_id, seq=10**9)
        async with client.get(url) as fresh:  # its backlog read meets the row
            assert fresh.status == 500
            assert (await fresh.json())["code"] == "Internal"
        corrupt = [r for r in caplog.records if r.exc_info and r.exc_info[0] is CorruptEvent]
        assert len(corrupt) == 1 and "seq 1000000000" in str(corrupt[0].exc_info[1])
        resumed = client.get(url, headers={"Last-Event-ID": str(first[-1].id)})  # by version
        async with resumed as again:
            assert again.status == 200
            gate.open()
            rest = await read_events(live)
            assert await read_events(again) == rest
    logged = await client.app[ENGINE].log.read(job_id)  # by version: without the corrupt row
    assert [e.id for e in first + rest] == [rec.seq for rec in logged]
    assert rest[-1].event == "job-completed"


async def test_a_feed_answers_whether_a_terminal_event_was_retried(tmp_path: Path) -> None:
    async with await EventLog.open(tmp_path) as log:
        created = JobCreated(preset="p", steps=("mux",), correlation_id="c")
        error = make_error("FFmpegNotFound", "no ffmpeg")
        await log.append("j", [created, JobStarted()], 0)
        feed = JobFeed(log, "j", lambda _: None)  # sees every event after seq 2
        (failed,) = await log.append("j", [JobFailed(error=error)], 2)
        assert feed.retried_after(failed.seq) is False  # live: known without reading the log
        (retried,) = await log.append("j", [JobRetryRequested(attempt=2)], 3)
        assert feed.retried_after(failed.seq) is True
        assert feed.retried_after(retried.seq) is False
        assert feed.retried_after(1) is None  # older than the feed: only the log can tell
        feed.stop()


async def test_shutdown_ends_open_streams(make_client: Any, tiny: TinyPipeline) -> None:
    client = await make_client()
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    resp = await client.get(f"/api/jobs/{job['jobId']}/events")
    assert len(await read_events(resp, limit=1)) == 1
    closing = asyncio.create_task(client.server.close())
    async with asyncio.timeout(10):  # well before aiohttp's own shutdown timeout (60 s)
        rest = await read_events(resp)  # ends (EOF) instead of hanging
    assert rest and all(e.data["jobId"] == job["jobId"] for e in rest)  # the rest of the backlog
    resp.release()
    gate.open()
    await closing


async def test_every_event_type_maps_to_a_wire_name() -> None:
    from aura.projections.events import EVENT_TYPES

    assert set(WIRE_NAMES) == set(EVENT_TYPES)
    assert set(WIRE_NAMES.values()) == {
        "step-progress",
        "step-status",
        "step-error",
        "job-status",
        "job-completed",
        "job-failed",
        "job-warning",
        "job-canceled",
        "job-output-pruned",
    }


def test_the_wire_check_names_an_event_type_without_a_wire_name_or_payload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aura.http import wire

    wire._check_wire()  # as at import: every type of the closed union is mapped
    missing: type[Event] = JobFailed
    for name in ("WIRE_NAMES", "_PAYLOADS"):
        table: dict[type[Event], object] = getattr(wire, name)
        with monkeypatch.context() as patch:
            patch.delitem(table, missing)
            with pytest.raises(TypeError, match="JobFailed"):
                wire._check_wire()
