"""What the web page reads: a job's lastSeq, ETA and correlation id; the job as of a past seq
(the server's fold, as `aura replay --at` shows it); the list's lastSeq; `GET /api/events`, the
list's changes, exactly once, in order, resumable."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

import aiohttp

from aura.http.keys import ENGINE, FANOUT, JOB_LIST_FEED
from aura.http.sse import StreamConfig
from aura.tests.e2e.helpers import TinyPipeline, finished_job, follow, log_lines, submit
from aura.tests.e2e.sse_client import SseEvent, parse_block, read_events
from aura.tests.e2e.test_http_api import problem

#: what each event that can change a row makes the row's status (written out, not derived
#: from the server's code)
ROW_STATUS = {
    "JobCreated": "Queued",
    "JobStarted": "Running",
    "JobSucceeded": "Succeeded",
    "JobFailed": "Failed",
    "JobCanceled": "Canceled",
    "JobRetryRequested": "Queued",
    "JobInterrupted": "Queued",
}
TERMINAL = {"JobSucceeded", "JobFailed", "JobCanceled"}
FAST_PINGS = StreamConfig(ping_interval=0.3, retry_ms=500)


Logs = dict[str, list[dict[str, Any]]]


def expected_changes(logs: Logs, after: int = 0) -> list[dict[str, Any]]:
    """The `job-changed` data the jobs' logs (by job id) make, in seq order, after seq `after`:
    each row change with the row right after it."""
    changes = []
    for job_id, lines in logs.items():
        row: dict[str, Any] | None = None
        for line in lines:
            kind = line["type"]
            if kind not in ROW_STATUS:
                continue
            new = dict(row or {})
            if kind == "JobCreated":
                new = {
                    "jobId": job_id,
                    "preset": line["data"]["preset"],
                    "createdUtc": line["ts"],
                    "startedUtc": None,
                    "endedUtc": None,
                }
            new["status"] = ROW_STATUS[kind]
            if kind in ("JobCreated", "JobRetryRequested"):
                new["attempt"] = line["attempt"]
            if kind == "JobStarted":
                new["startedUtc"] = new["startedUtc"] or line["ts"]
            if kind in TERMINAL:
                new["endedUtc"] = line["ts"]
            if kind == "JobRetryRequested":
                new["endedUtc"] = None
            if new != row and line["seq"] > after:
                changes.append({"seq": line["seq"], "job": new})
            row = new
    return sorted(changes, key=lambda c: c["seq"])


async def logs_of(client: Any, job_ids: list[str]) -> Logs:
    return {job_id: await log_lines(client, job_id) for job_id in job_ids}


async def read_until_ping(resp: aiohttp.ClientResponse, seconds: float = 10.0) -> list[SseEvent]:
    """The messages before the stream's next keep-alive comment (sent once it is idle)."""
    events: list[SseEvent] = []
    lines: list[str] = []
    async with asyncio.timeout(seconds):
        while True:
            raw = await resp.content.readline()
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if line == ": ping":
                return events
            if line:
                lines.append(line)
                continue
            event = parse_block(lines)
            lines = []
            if event is not None:
                events.append(event)


def as_data(events: list[SseEvent]) -> list[dict[str, Any]]:
    for e in events:
        assert e.event == "job-changed" and e.id == e.data["seq"]
    return [e.data for e in events]


# ---- the job view: lastSeq, correlationId, etaSeconds -------------------------------------


async def test_a_job_carries_its_last_seq_and_correlation_id(
    client: Any, tiny: TinyPipeline
) -> None:
    gate = tiny.gate("render")
    job = await submit(client)
    job_id = job["jobId"]
    lines = await log_lines(client, job_id)
    assert job["lastSeq"] == lines[0]["seq"]  # the JobCreated the answer folded
    assert job["correlationId"] == lines[0]["data"]["correlationId"] and job["correlationId"]
    await gate.entered.wait()
    now = await (await client.get(f"/api/jobs/{job_id}")).json()
    lines = await log_lines(client, job_id)
    assert now["lastSeq"] == lines[-1]["seq"]
    # the page resumes the job's stream after it: exactly the events still to come
    async with client.get(
        f"/api/jobs/{job_id}/events", params={"lastEventId": now["lastSeq"]}
    ) as r:
        gate.open()
        rest = await read_events(r)
    lines = await log_lines(client, job_id)
    assert [e.id for e in rest] == [line["seq"] for line in lines if line["seq"] > now["lastSeq"]]
    done = await (await client.get(f"/api/jobs/{job_id}")).json()
    assert done["lastSeq"] == lines[-1]["seq"] and done["correlationId"] == job["correlationId"]


async def test_eta_is_known_once_a_job_of_the_preset_succeeded_and_null_once_ended(
    client: Any, tiny: TinyPipeline
) -> None:
    gate = tiny.gate("render")
    first = await submit(client)
    assert first["etaSeconds"] is None  # no job of the preset has succeeded yet
    await gate.entered.wait()
    running = await (await client.get(f"/api/jobs/{first['jobId']}")).json()
    assert running["status"] == "Running" and running["etaSeconds"] is None
    gate.open()
    await follow(client, first["jobId"])
    done = await (await client.get(f"/api/jobs/{first['jobId']}")).json()
    assert done["status"] == "Succeeded" and done["etaSeconds"] is None

    gate = tiny.gate("render")
    second = await submit(client)
    await gate.entered.wait()
    queued = await submit(client)  # one job runs at a time: this one waits
    assert queued["status"] == "Queued"
    assert isinstance(queued["etaSeconds"], float) and queued["etaSeconds"] >= 0
    running = await (await client.get(f"/api/jobs/{second['jobId']}")).json()
    assert running["status"] == "Running"
    assert isinstance(running["etaSeconds"], float) and running["etaSeconds"] >= 0
    # nothing about this job's ETA is in the past: a view at a seq has none
    at = await (await client.get(f"/api/jobs/{second['jobId']}?at={running['lastSeq']}")).json()
    assert at["etaSeconds"] is None and at["lastSeq"] == running["lastSeq"]
    gate.open()
    for job in (second, queued):
        await follow(client, job["jobId"])
        ended = await (await client.get(f"/api/jobs/{job['jobId']}")).json()
        assert ended["status"] == "Succeeded" and ended["etaSeconds"] is None


# ---- time travel: GET /api/jobs/{id}?at=SEQ ------------------------------------------------


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A job shape with its timestamps parsed (replay's JSON writes them its own way), without
    the fields only one side has."""

    def parse(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: parse(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [parse(v) for v in value]
        if key.endswith("Utc") and isinstance(value, str):
            return datetime.fromisoformat(value)
        return value

    # unrecorded: what the server knows and the log does not say (yet): never in a replay
    only_one_side = {"etaSeconds", "cancelRequested", "version", "unrecorded"}
    return {k: parse(v, k) for k, v in state.items() if k not in only_one_side}


async def replay_at(data_dir: Any, job_id: str, seq: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aura.cli.main",
        "replay",
        job_id,
        "--at",
        str(seq),
        "--json",
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    state: dict[str, Any] = json.loads(out)["state"]
    return state


async def test_a_job_at_a_seq_is_the_state_aura_replay_shows_then(
    client: Any, tiny: TinyPipeline, settings: Any
) -> None:
    tiny.fail["render"] = {1}
    tiny.paced = {"prepare"}  # every progress tick recorded: views with a step's ETA
    other = await finished_job(client)  # a job in between: seqs of the log, not of the job
    job = await submit(client)
    job_id = job["jobId"]
    await follow(client, job_id)
    assert (await client.post(f"/api/jobs/{job_id}/retry")).status == 202
    await follow(client, job_id, after=(await log_lines(client, job_id))[-1]["seq"])
    await follow(client, other["jobId"])
    seqs = [line["seq"] for line in await log_lines(client, job_id)]
    kinds = {line["seq"]: line["type"] for line in await log_lines(client, job_id)}
    picked = {seqs[0], seqs[1], seqs[len(seqs) // 2], seqs[-1], seqs[-1] + 1000}
    for wanted in ("StepProgressed", "StepFailed", "JobFailed", "JobRetryRequested"):
        picked.add(next(s for s, kind in kinds.items() if kind == wanted))
    for seq in sorted(picked):
        resp = await client.get(f"/api/jobs/{job_id}", params={"at": str(seq)})
        assert resp.status == 200, await resp.text()
        view = await resp.json()
        assert view["lastSeq"] == max(s for s in seqs if s <= seq)
        assert view["etaSeconds"] is None
        assert _comparable(view) == _comparable(await replay_at(settings.data_dir, job_id, seq))
    # a step's ETA as recorded shows in the view of its seq
    tick = next(s for s, kind in kinds.items() if kind == "StepProgressed")
    view = await (await client.get(f"/api/jobs/{job_id}?at={tick}")).json()
    assert any(step["etaSeconds"] is not None for step in view["steps"])
    # at the last seq (or after it) the view is the job as it is, without ETA
    now = await (await client.get(f"/api/jobs/{job_id}")).json()
    at_end = await (await client.get(f"/api/jobs/{job_id}?at={seqs[-1]}")).json()
    assert at_end == now


async def test_at_must_be_a_seq_at_or_after_the_jobs_first_event(client: Any) -> None:
    first = await finished_job(client)
    job = await finished_job(client)
    job_id = job["jobId"]
    begins = (await log_lines(client, job_id))[0]["seq"]
    url = f"/api/jobs/{job_id}"
    for bad in ("", "abc", "-1", "1.5", "1e3", " 7", "0x10", "\uff11", "9" * 19, "9" * 5000):
        await problem(await client.get(url, params={"at": bad}), 400, "InvalidInput:at")
    for before in (0, begins - 1):  # the job did not exist yet
        await problem(await client.get(url, params={"at": str(before)}), 400, "InvalidInput:at")
    created = await (await client.get(url, params={"at": str(begins)})).json()
    assert created["status"] == "Queued" and created["lastSeq"] == begins
    assert all(step["status"] == "Pending" for step in created["steps"])
    await problem(await client.get("/api/jobs/nope", params={"at": "5"}), 404, "JobNotFound")
    assert (await client.get(f"/api/jobs/{first['jobId']}", params={"at": "1"})).status == 200


# ---- the list's lastSeq and GET /api/events ------------------------------------------------


def row_as_of(lines: list[dict[str, Any]], job_id: str, seq: int) -> dict[str, Any] | None:
    rows = [c["job"] for c in expected_changes({job_id: lines}) if c["seq"] <= seq]
    return rows[-1] if rows else None


async def test_the_lists_rows_are_those_of_the_events_up_to_its_last_seq(
    client: Any, tiny: TinyPipeline
) -> None:
    """Listings taken while jobs are created and run: each is the rows as of its lastSeq,
    exactly (no row ahead of it, none behind)."""
    gate = tiny.gate("render")

    async def run_jobs() -> list[dict[str, Any]]:
        jobs = await asyncio.gather(*(submit(client) for _ in range(6)))
        for job in jobs:
            await follow(client, job["jobId"])
        return jobs

    running = asyncio.create_task(run_jobs())
    pages = [await (await client.get("/api/jobs?limit=100")).json()]
    # one listing surely mid-run (a loaded machine may run all six between two listings)
    await gate.entered.wait()
    pages.append(await (await client.get("/api/jobs?limit=100")).json())
    gate.open()
    while not running.done():  # each listing is an HTTP round trip: no busy loop
        pages.append(await (await client.get("/api/jobs?limit=100")).json())
    jobs = await running
    pages.append(await (await client.get("/api/jobs?limit=100")).json())
    logs = await logs_of(client, [job["jobId"] for job in jobs])
    assert len({page["lastSeq"] for page in pages}) > 1  # taken at different points
    for page in pages:
        listed = {row["jobId"]: row for row in page["jobs"]}
        for job_id, lines in logs.items():
            assert listed.get(job_id) == row_as_of(lines, job_id, page["lastSeq"]), page
    assert pages[-1]["lastSeq"] == (await (await client.get("/api/health")).json())["lastSeq"]


async def test_job_list_events_deliver_each_change_once_in_order_and_resume_exactly(
    make_client: Any, tiny: TinyPipeline
) -> None:
    client = await make_client(stream=FAST_PINGS)
    tiny.fail["render"] = {1}
    gate = tiny.gate("prepare")
    early = await submit(client)  # running before the list is followed: met mid-way
    await gate.entered.wait()
    listing = await (await client.get("/api/jobs")).json()
    async with client.get("/api/events", params={"lastEventId": listing["lastSeq"]}) as live:
        assert live.status == 200 and live.headers["Content-Type"].startswith("text/event-stream")
        assert await read_until_ping(live) == []  # nothing changed since the listing
        jobs = [early, *[await submit(client) for _ in range(2)]]
        gate.open()
        for job in jobs:
            await follow(client, job["jobId"])  # each fails its first attempt
        assert (await client.post(f"/api/jobs/{jobs[1]['jobId']}/retry")).status == 202
        del tiny.fail["render"]
        await follow(client, jobs[1]["jobId"], after=listing["lastSeq"])
        logs = await logs_of(client, [job["jobId"] for job in jobs])
        expected = expected_changes(logs, after=listing["lastSeq"])
        received = await read_until_ping(live)  # all of them, then nothing more
    assert as_data(received) == expected
    statuses = [c["job"]["status"] for c in expected if c["job"]["jobId"] == jobs[1]["jobId"]]
    assert statuses == ["Queued", "Running", "Failed", "Queued", "Running", "Succeeded"]
    # the early job's failure, the two others' creation, start and failure, the retried
    # job's new attempt: no message for a progress tick or a step
    assert len(expected) == 1 + 2 * 3 + 3

    everything = expected_changes(logs)
    for how in ("header", "query"):
        for k in (0, 1, len(everything) // 2, len(everything) - 1, len(everything)):
            after = everything[k - 1]["seq"] if k else 0
            headers = {"Last-Event-ID": str(after)} if how == "header" else {}
            params = {"lastEventId": str(after)} if how == "query" else {}
            async with client.get("/api/events", headers=headers, params=params) as resumed:
                assert as_data(await read_until_ping(resumed)) == everything[k:], (how, k)


async def test_job_list_events_start_live_without_an_id_and_ping_while_idle(
    make_client: Any,
) -> None:
    client = await make_client(stream=FAST_PINGS)
    before = await finished_job(client)
    log = client.app[ENGINE].log
    base = log.subscriber_count
    async with client.get("/api/events") as live, client.get("/api/events") as other:
        assert await read_until_ping(live) == []  # the finished job is not replayed
        assert await read_until_ping(live) == []  # and it keeps pinging
        assert log.subscriber_count == base + 1  # one subscription serves every list client
        job = await finished_job(client)
        received = await read_until_ping(live)
        assert await read_events(other, limit=len(received)) == received  # (past its pings)
    assert {e.data["job"]["jobId"] for e in received} == {job["jobId"]}
    assert [e.data["job"]["status"] for e in received] == ["Queued", "Running", "Succeeded"]
    assert before["jobId"] != job["jobId"]


async def test_job_list_events_refuse_a_malformed_or_unknown_id(client: Any) -> None:
    await finished_job(client)
    newest = (await (await client.get("/api/health")).json())["lastSeq"]
    for bad in ("abc", "-1", "9" * 40):
        resp = await client.get("/api/events", headers={"Last-Event-ID": bad})
        await problem(resp, 400, "InvalidInput:Last-Event-ID")
    await problem(await client.get("/api/events?lastEventId=x"), 400, "InvalidInput:lastEventId")
    resp = await client.get("/api/events", params={"lastEventId": str(newest + 1)})
    await problem(resp, 400, "InvalidInput:lastEventId")  # never sent: it would skip events


async def test_list_streams_count_toward_the_stream_cap(
    make_client: Any, tiny: TinyPipeline
) -> None:
    client = await make_client(stream=StreamConfig(max_streams=2))
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    feed, fanout = client.app[JOB_LIST_FEED], client.app[FANOUT]
    async with aiohttp.ClientSession() as session:
        listed = await session.get(client.make_url("/api/events"))
        followed = await session.get(client.make_url(f"/api/jobs/{job['jobId']}/events"))
        assert (listed.status, followed.status) == (200, 200)
        for url in ("/api/events", f"/api/jobs/{job['jobId']}/events"):
            refused = await session.get(client.make_url(url))
            assert refused.status == 503 and refused.headers["Retry-After"] == "5"
            assert (await refused.json(content_type=None))["code"] == "ServerBusy"
        listed.close()
        async with asyncio.timeout(5):
            while feed.listener_count:  # noqa: ASYNC110 - the server notices by itself
                await asyncio.sleep(0.01)
        again = await session.get(client.make_url("/api/events"))
        assert again.status == 200
        again.close()
        followed.close()
    async with asyncio.timeout(5):
        while feed.listener_count or fanout.listener_count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert client.app[JOB_LIST_FEED]._tasks == ()  # no subscription while nobody follows
    gate.open()


async def test_shutdown_ends_open_list_streams(make_client: Any) -> None:
    client = await make_client()
    resp = await client.get("/api/events")
    assert resp.status == 200
    closing = asyncio.create_task(client.server.close())
    async with asyncio.timeout(10):  # well before aiohttp's own shutdown timeout (60 s)
        assert await read_events(resp) == []  # ends (EOF) instead of hanging
    resp.release()
    await closing
