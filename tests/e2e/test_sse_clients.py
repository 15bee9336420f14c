"""Third-party SSE clients read the streams as the spec says (issue 18).

httpx-sse and sseclient-py follow a real job's stream (a real server on 127.0.0.1, the tiny real
pipeline) to its end: the (id, event, data) they yield are the job's log, seq for seq, wire name
for wire name, every data JSON; none is empty. A stream used to open with a block holding only
`retry:`, which httpx-sse yields as a message with empty data; the hint now rides in the first
event's message. (The browser's EventSource: tests/browser.)
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import httpx
import pytest
from httpx_sse import EventSource, aconnect_sse
from sseclient import Event, SSEClient

from aura.http.keys import FANOUT
from aura.http.sse import StreamConfig
from aura.http.wire import WIRE_NAMES
from aura.tests.e2e.helpers import TinyPipeline, finished_job, log_lines, submit

#: the log's type name -> the stream's event name
WIRE_BY_TYPE = {kind.__name__: name for kind, name in WIRE_NAMES.items()}
RETRY_MS = 500  # conftest's StreamConfig
FAST_PINGS = StreamConfig(ping_interval=0.3, retry_ms=RETRY_MS)
TIMEOUT = 30.0


class Item(NamedTuple):
    """A message as a client yields it."""

    id: str | None
    event: str
    data: str
    retry: int | None


Reader = Callable[[str, int | None], Coroutine[Any, Any, list[Item]]]


async def read_with_httpx_sse(url: str, last_event_id: int | None) -> list[Item]:
    """Every message httpx-sse yields until the stream ends."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        aconnect_sse(http, "GET", url, headers=headers) as source,
    ):
        assert source.response.status_code == 200
        return [Item(e.id, e.event, e.data, e.retry) async for e in source.aiter_sse()]


def sseclient_item(event: Event) -> Item:
    retry = event.retry  # a string: sseclient-py keeps each field as it came
    return Item(event.id, event.event, event.data, None if retry is None else int(retry))


def _read_with_sseclient(url: str, last_event_id: int | None) -> list[Item]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
        assert resp.status == 200
        return [sseclient_item(e) for e in SSEClient(resp).events()]


async def read_with_sseclient(url: str, last_event_id: int | None) -> list[Item]:
    """Every message sseclient-py (over urllib, blocking: in a thread) yields until the end."""
    return await asyncio.to_thread(_read_with_sseclient, url, last_event_id)


READERS = pytest.mark.parametrize(
    "read", [read_with_httpx_sse, read_with_sseclient], ids=["httpx-sse", "sseclient-py"]
)


def assert_is_the_log(items: list[Item], lines: list[dict[str, Any]], job_id: str) -> None:
    """`items` are `lines` (the job's /log, from where the stream started): id = seq, event =
    the type's wire name, data = the event as JSON."""
    assert [(i.id, i.event) for i in items] == [
        (str(line["seq"]), WIRE_BY_TYPE[line["type"]]) for line in lines
    ]
    for item, line in zip(items, lines, strict=True):
        data = json.loads(item.data)
        assert (data["jobId"], data["type"], data["ts"]) == (job_id, line["type"], line["ts"])


def url_of(client: Any, path: str) -> str:
    return str(client.make_url(path))


async def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait, bounded, for a state the server reaches by itself (a client joined)."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - the condition is the server's, not ours
            await asyncio.sleep(0.01)


@READERS
async def test_a_client_follows_a_job_to_its_end_and_reads_exactly_its_log(
    client: Any, tiny: TinyPipeline, read: Reader
) -> None:
    tiny.paced = {"render"}  # part backlog, part live
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    reading = asyncio.create_task(read(url_of(client, f"/api/jobs/{job['jobId']}/events"), None))
    await wait_for(lambda: client.app[FANOUT].listener_count == 1)
    gate.open()
    async with asyncio.timeout(TIMEOUT):
        items = await reading
    lines = await log_lines(client, job["jobId"])
    assert_is_the_log(items, lines, job["jobId"])
    assert items[-1].event == "job-completed"
    # the hint rides in the first message (sseclient-py keeps it on that message alone)
    assert items[0].retry == RETRY_MS


@READERS
async def test_a_client_resumes_after_a_last_event_id_from_the_middle(
    client: Any, read: Reader
) -> None:
    job = await finished_job(client)
    lines = await log_lines(client, job["jobId"])
    middle = len(lines) // 2
    after = lines[middle - 1]["seq"]
    url = url_of(client, f"/api/jobs/{job['jobId']}/events")
    items = await read(url, after)
    assert_is_the_log(items, lines[middle:], job["jobId"])
    assert items[0].retry == RETRY_MS
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:  # at its end: 204, nothing to read
        resp = await http.get(url, headers={"Last-Event-ID": str(lines[-1]["seq"])})
        assert resp.status_code == 204


@READERS
async def test_a_stream_resumed_at_a_running_jobs_newest_event_starts_with_a_live_one(
    client: Any, tiny: TinyPipeline, read: Reader
) -> None:
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    newest = (await log_lines(client, job["jobId"]))[-1]["seq"]
    reading = asyncio.create_task(read(url_of(client, f"/api/jobs/{job['jobId']}/events"), newest))
    await wait_for(lambda: client.app[FANOUT].listener_count == 1)  # (a ping first: below)
    gate.open()
    async with asyncio.timeout(TIMEOUT):
        items = await reading
    lines = [line for line in await log_lines(client, job["jobId"]) if line["seq"] > newest]
    assert_is_the_log(items, lines, job["jobId"])
    assert items[0].retry == RETRY_MS


async def test_httpx_sse_reads_the_job_list_stream(client: Any) -> None:
    job = await finished_job(client)
    lines = await log_lines(client, job["jobId"])
    changes = [
        line for line in lines if line["type"] in ("JobCreated", "JobStarted", "JobSucceeded")
    ]
    items: list[Item] = []
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        aconnect_sse(http, "GET", url_of(client, "/api/events?lastEventId=0")) as source,
    ):
        async for e in source.aiter_sse():
            items.append(Item(e.id, e.event, e.data, e.retry))
            if len(items) == len(changes):
                break
    assert [(i.id, i.event) for i in items] == [(str(c["seq"]), "job-changed") for c in changes]
    datas = [json.loads(i.data) for i in items]
    assert [(d["seq"], d["job"]["jobId"]) for d in datas] == [
        (c["seq"], job["jobId"]) for c in changes
    ]
    assert [d["job"]["status"] for d in datas] == ["Queued", "Running", "Succeeded"]
    assert items[0].retry == RETRY_MS


async def first_message_after_a_ping(
    client: Any, path: str, then: Callable[[], Coroutine[Any, Any, Any]]
) -> bytes:
    """The stream's bytes from its start to the end of its first message: it is read until a
    keep-alive comment, then `then()` makes an event, whose message ends the read."""
    body = b""
    made: asyncio.Task[Any] | None = None
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        http.stream("GET", url_of(client, path)) as resp,
        asyncio.timeout(TIMEOUT),
    ):
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            body += line.encode() + b"\n"
            if made is None and line == ": ping":
                assert b"data:" not in body  # no event yet: the stream is idle
                made = asyncio.create_task(then())
            elif made is not None and not line and b"data:" in body:
                break
    assert made is not None
    await made
    return body


@pytest.mark.parametrize("stream", ["job", "list"])
async def test_an_idle_streams_pings_then_first_message_read_as_one_message(
    make_client: Any, tiny: TinyPipeline, stream: str
) -> None:
    """Before any event a stream may ping (a job stream resumed at a running job's newest
    event, the job list's stream started live): still the clients yield nothing but the first
    event, which carries the retry hint."""
    client = await make_client(stream=FAST_PINGS)
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    if stream == "job":
        newest = (await log_lines(client, job["jobId"]))[-1]["seq"]
        path = f"/api/jobs/{job['jobId']}/events?lastEventId={newest}"

        async def make_event() -> None:
            gate.open()

    else:
        path = "/api/events"

        async def make_event() -> None:
            await submit(client)

    body = await first_message_after_a_ping(client, path, make_event)
    gate.open()
    response = httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body)
    by_httpx_sse = [Item(e.id, e.event, e.data, e.retry) for e in EventSource(response).iter_sse()]
    by_sseclient = [sseclient_item(e) for e in SSEClient(iter([body])).events()]
    assert by_sseclient == by_httpx_sse
    assert len(by_httpx_sse) == 1, by_httpx_sse
    first = by_httpx_sse[0]
    assert first.retry == RETRY_MS
    data = json.loads(first.data)
    if stream == "job":
        line = next(line for line in await log_lines(client, job["jobId"]) if line["seq"] > newest)
        assert (first.id, first.event) == (str(line["seq"]), WIRE_BY_TYPE[line["type"]])
        assert data["type"] == line["type"]
    else:
        assert first.event == "job-changed" and first.id == str(data["seq"])
        assert data["job"]["status"] == "Queued" and data["job"]["jobId"] != job["jobId"]


async def test_pings_after_events_are_no_messages_to_any_client(
    make_client: Any, tiny: TinyPipeline
) -> None:
    """A keep-alive is a comment line with no blank line after it: a block ending there would
    make httpx-sse yield an empty message carrying the last event id."""
    client = await make_client(stream=FAST_PINGS)
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    body, pings = b"", 0
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        http.stream("GET", url_of(client, f"/api/jobs/{job['jobId']}/events")) as resp,
        asyncio.timeout(TIMEOUT),
    ):
        async for line in resp.aiter_lines():
            body += line.encode() + b"\n"
            pings += line == ": ping"
            if pings == 2:  # idle after its events
                break
    gate.open()
    assert b"data:" in body
    response = httpx.Response(200, headers={"Content-Type": "text/event-stream"}, content=body)
    by_httpx_sse = [Item(e.id, e.event, e.data, e.retry) for e in EventSource(response).iter_sse()]
    by_sseclient = [sseclient_item(e) for e in SSEClient(iter([body])).events()]
    assert by_sseclient == by_httpx_sse
    assert [item.id for item in by_httpx_sse] == [
        str(line["seq"]) for line in await log_lines(client, job["jobId"])
    ][: len(by_httpx_sse)]
    assert all(item.data for item in by_httpx_sse), by_httpx_sse
