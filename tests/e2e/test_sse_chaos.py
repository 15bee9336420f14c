"""SSE chaos (issue 18): many clients drop and resume at random points, across server restarts.

A real `aura serve` renders a few small jobs (real ffmpeg and espeak-ng) while CLIENTS clients
follow their streams (`/api/jobs/{id}/events`) or the job list's (`/api/events`) over raw
sockets. Each connection is cut after a random number of bytes (so most cuts land inside a
message's block, or in the HTTP head or a chunk's framing) or a random time, and the client
reconnects with the id of its last complete message, keeping only the messages whose blank line
arrived, as EventSource does. Meanwhile the server is stopped with SIGTERM, then with SIGKILL,
and started again on the same port and data folder. Then every client's messages, stitched
across its connections, are exactly its stream: a job's log seq for seq (an uninterrupted read
of the stream, checked against `/log`), the list's row changes as `GET /api/jobs/{id}?at=SEQ`
shows each row. Along the way every connection's messages have rising ids, the first alone
carries `retry:`, no block ends without a message, and a body the server ends cleanly (its last
chunk, as the SIGTERM ends the list's streams) ends with no message begun. The randomness is
seeded: AURA_SSE_CHAOS_SEED=N repeats a run's choices (timing aside; the seed is in every
failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from aura.engine.config.settings import Settings
from aura.http.sse import StreamConfig
from aura.tests.e2e.conftest import AppFactory
from aura.tests.e2e.helpers import TinyPipeline
from aura.tests.e2e.raw_http import ChunkedBody, RestartableServe, aura_serve_restartable
from aura.tests.e2e.sse_client import (
    SseEvent,
    SseParser,
    assert_stream_is_the_log,
    read_events,
)

pytestmark = pytest.mark.slow  # real renders through a real server

CLIENTS = 50
JOBS = 3
#: seconds the whole run may take (renders on a loaded machine included)
RUN_TIMEOUT = 150.0
SEED_VARIABLE = "AURA_SSE_CHAOS_SEED"
TERMINAL = {"Succeeded", "Failed", "Canceled"}
#: renders at once, so the list's stream interleaves jobs and a stop interrupts more than one
CONCURRENT = {"AURA_MAX_CONCURRENT_JOBS": "2"}
SUMMARY_FIELDS = ("jobId", "preset", "status", "attempt", "createdUtc", "startedUtc", "endedUtc")


def brief(n: int) -> dict[str, Any]:
    lines = [f"Chaos job {n}, line one.", "A second line to speak.", "And a third."]
    return {
        "preset": "default",
        "brief": {"title": f"Chaos {n}", "script": lines},
        "options": {"quality": "draft", "encoder": "x264"},
    }


@dataclass
class Follower:
    """One client of one stream: its EventSource-like reconnection loop over raw sockets."""

    name: str
    path: str
    rng: random.Random
    #: the jobs whose end the list's client waits for (empty for a job's client)
    jobs: frozenset[str] = frozenset()
    events: list[SseEvent] = field(default_factory=list)
    #: how its connections ended: refused (the server was down), reset (by the server), cut
    #: (by the client; "cut in a message" when a message had begun), eof (closed by the
    #: server mid-body), ended (the body's last chunk came), 204
    ends: Counter[str] = field(default_factory=Counter)
    last_status: int | None = None
    pings: int = 0

    @property
    def done_with_list(self) -> bool:
        if not self.jobs:
            return False
        ended = {e.data["job"]["jobId"] for e in self.events if e.data["job"]["status"] in TERMINAL}
        return self.jobs <= ended

    async def follow(self, port: int) -> None:
        """Connect, read, cut, reconnect with the last complete message's id, until done."""
        while True:
            try:
                end = await self._connection(port)
            except ConnectionRefusedError:
                end = "refused"  # the server is down (restarting)
                await asyncio.sleep(self.rng.uniform(0.1, 0.4))
            except (ConnectionResetError, BrokenPipeError):
                end = "reset"  # the server died under this connection
            self.ends[end] += 1
            if end == "204" or self.done_with_list:
                return
            await asyncio.sleep(self.rng.uniform(0, 0.05))

    def _request(self) -> bytes:
        last = f"Last-Event-ID: {self.events[-1].id}\r\n" if self.events else ""
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Accept: text/event-stream\r\n{last}\r\n"
        ).encode()

    async def _connection(self, port: int) -> str:
        """One connection, cut after a random byte count or time (or none); how it ended."""
        budget = None if self.rng.random() < 0.2 else self.rng.randint(1, 2500)
        linger = self.rng.uniform(0.05, 2.0) if self.rng.random() < 0.3 else None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        state = _Connection(self)
        chunk = b"-"
        try:
            writer.write(self._request())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    while budget is None or state.received < budget:
                        size = 65536 if budget is None else budget - state.received
                        chunk = await reader.read(size)
                        if not chunk or state.take(chunk):
                            break
        finally:
            if self.rng.random() < 0.5:
                writer.transport.abort()  # a reset, as a dropped network would
            else:
                writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self.pings += state.parser.comments
        if state.no_content:
            return "204"
        if state.body.ended:
            return "ended"
        if not chunk:
            return "eof"
        return "cut in a message" if state.parser.partial else "cut"


class _Connection:
    """What one connection of a follower read: its head, then its body's messages."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.received = 0
        self.head = b""
        self.status: int | None = None
        self.no_content = False
        self.body = ChunkedBody()
        self.parser = SseParser()
        self.messages = 0

    def take(self, chunk: bytes) -> bool:
        """Take the bytes read; True when the response has ended (or the list's client has
        seen every job end: the list's stream never ends by itself)."""
        self.received += len(chunk)
        if self.status is None:
            self.head += chunk
            if b"\r\n\r\n" not in self.head:
                return False
            head, chunk = self.head.split(b"\r\n\r\n", 1)
            self.status = self.follower.last_status = int(head.split()[1])
            if self.status == 204:  # the job ended at or before our last id: EventSource stops
                assert not self.follower.jobs, f"{self.follower.name}: the list answered 204"
                self.no_content = True
                return True
            assert self.status == 200, (self.follower.name, head, chunk[:300])
            assert b"\r\ntransfer-encoding: chunked" in head.lower(), head
        for event in self.parser.feed(self.body.feed(chunk)):
            # the reconnection hint rides in each stream's first message, and only there
            assert (event.retry is not None) == (self.messages == 0), (self.follower.name, event)
            self.messages += 1
            events = self.follower.events
            assert not events or event.id > events[-1].id, (
                f"{self.follower.name}: id {event.id} after {events[-1].id} (a duplicate?)"
            )
            events.append(event)
        assert self.parser.empty_blocks == 0, f"{self.follower.name}: a block with no message"
        if self.body.ended:  # a clean end: the server must not have cut a message
            assert not self.parser.partial, f"{self.follower.name}: the stream ended mid-message"
        return self.body.ended or self.follower.done_with_list


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, (url, resp.status, await resp.text())
        return await resp.json()


async def job_log(session: aiohttp.ClientSession, base: str, job_id: str) -> list[Any]:
    async with session.get(f"{base}/api/jobs/{job_id}/log") as resp:
        assert resp.status == 200, await resp.text()
        return [json.loads(line) for line in (await resp.text()).splitlines() if line]


async def restarts(server: RestartableServe, rng: random.Random, base: str) -> list[int]:
    """SIGTERM, then SIGKILL, each once the log has grown by a random few events after the
    last start while a job renders; the log's last seq at each stop."""
    stopped_at = []
    async with aiohttp.ClientSession() as session:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            target = (await get_json(session, f"{base}/api/health"))["lastSeq"] + rng.randint(4, 9)
            while True:
                page = await get_json(session, f"{base}/api/jobs")
                running = [job for job in page["jobs"] if job["status"] == "Running"]
                assert running or any(job["status"] == "Queued" for job in page["jobs"]), (
                    f"every render ended before the {sig.name}"
                )
                if running and page["lastSeq"] >= target:
                    break
                await asyncio.sleep(0.02)  # the server's log grows
            await asyncio.sleep(rng.uniform(0, 0.2))
            stopped_at.append(page["lastSeq"])
            await asyncio.to_thread(server.restart, sig)
    return stopped_at


async def list_oracle(
    session: aiohttp.ClientSession, base: str, logs: dict[str, list[dict[str, Any]]]
) -> list[SseEvent]:
    """The job list stream's messages from the start, from the jobs' logs and `?at=`: one per
    event that changes its job's row (as the job view right after the event shows it)."""
    changes = []
    for job_id, lines in logs.items():
        row = None
        for line in lines:
            view = await get_json(session, f"{base}/api/jobs/{job_id}?at={line['seq']}")
            new = {name: view[name] for name in SUMMARY_FIELDS}
            if new != row:
                changes.append(
                    SseEvent(line["seq"], "job-changed", {"seq": line["seq"], "job": new})
                )
            row = new
    return sorted(changes, key=lambda event: event.id)


async def check_streams(
    base: str, followers: list[Follower], job_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each job's stream read once, uninterrupted, is its log, and each of its clients' messages
    equal it; each list client's messages are the list's row changes (`list_oracle`). The jobs'
    logs."""
    async with aiohttp.ClientSession() as session:
        logs = {job_id: await job_log(session, base, job_id) for job_id in job_ids}
        for job_id, lines in logs.items():
            assert lines[-1]["type"] == "JobSucceeded", lines[-1]
            async with session.get(f"{base}/api/jobs/{job_id}/events") as resp:
                assert resp.status == 200
                stream = await read_events(resp)
            assert_stream_is_the_log(stream, lines)
            for follower in followers:
                if follower.path == f"/api/jobs/{job_id}/events":
                    assert follower.events == stream, follower.name
        changes = await list_oracle(session, base, logs)
    for follower in followers:
        if follower.jobs:
            assert follower.events == changes, follower.name
    return logs


@contextlib.contextmanager
def seeded() -> Iterator[random.Random]:
    """The run's randomness, from AURA_SSE_CHAOS_SEED or a new seed, which any failure names."""
    seed = int(os.environ.get(SEED_VARIABLE) or random.randrange(2**32))
    print(f"{SEED_VARIABLE}={seed}")
    try:
        yield random.Random(seed)
    except BaseException as e:
        e.add_note(f"SSE chaos: repeat with {SEED_VARIABLE}={seed}")
        raise


async def submit_jobs(base: str) -> list[str]:
    async with aiohttp.ClientSession() as session:
        job_ids = []
        for n in range(JOBS):
            async with session.post(f"{base}/api/jobs", json=brief(n)) as resp:
                assert resp.status == 201, await resp.text()
                job_ids.append((await resp.json())["jobId"])
        return job_ids


def make_followers(rng: random.Random, job_ids: list[str]) -> list[Follower]:
    """CLIENTS clients, each following a job's stream or (about one in four) the list's."""
    followers = []
    for n in range(CLIENTS):
        own = random.Random(rng.randrange(2**32))
        if own.random() < 0.25:
            path, jobs = "/api/events?lastEventId=0", frozenset(job_ids)
        else:
            path, jobs = f"/api/jobs/{own.choice(job_ids)}/events", frozenset()
        followers.append(Follower(f"client {n} of {path}", path, own, jobs))
    return followers


async def follow_all(
    port: int,
    followers: list[Follower],
    beside: list[asyncio.Task[Any]],
    log: Callable[[], list[str]],
) -> Counter[str]:
    """Run the followers (and the `beside` tasks) to their ends; how their connections ended.
    `log`: the server's log lines, for a failure."""
    tasks: dict[asyncio.Task[Any], Follower] = {
        asyncio.create_task(f.follow(port)): f for f in followers
    }
    done, pending = await asyncio.wait(
        [*beside, *tasks], timeout=RUN_TIMEOUT, return_when=asyncio.FIRST_EXCEPTION
    )
    for task in pending:
        task.cancel()
    for task in done:
        task.result()  # a client's failed assertion
    stuck = "\n".join(
        f"{f.name}: {len(f.events)} messages, last {f.events[-1] if f.events else None}, "
        f"connections {dict(f.ends)}, last status {f.last_status}"
        for f in (tasks[t] for t in pending if t in tasks)
    )
    assert not pending, f"{len(pending)} tasks never finished:\n{stuck}\n" + "\n".join(log()[-30:])
    ends = sum((f.ends for f in followers), Counter[str]())
    assert ends["cut in a message"] >= CLIENTS, ends  # the cuts landed inside messages
    return ends


async def test_clients_cut_anywhere_and_across_restarts_resume_exactly(tmp_path: Path) -> None:
    with seeded() as rng, aura_serve_restartable(tmp_path / "data", **CONCURRENT) as server:
        base = f"http://127.0.0.1:{server.port}"
        job_ids = await submit_jobs(base)
        followers = make_followers(rng, job_ids)
        restarting = asyncio.create_task(restarts(server, rng, base))
        ends = await follow_all(server.port, followers, [restarting], server.served.log_lines)
        logs = await check_streams(base, followers, job_ids)
    # each stop interrupted a render; the SIGTERM ended the list's streams with their last chunk
    first, second = stopped_at = restarting.result()
    interrupted = [
        e["seq"] for lines in logs.values() for e in lines if e["type"] == "JobInterrupted"
    ]
    assert any(first < seq <= second for seq in interrupted), (stopped_at, interrupted)
    assert any(second < seq for seq in interrupted), (stopped_at, interrupted)
    list_ends = sum((f.ends for f in followers if f.jobs), Counter[str]())
    assert list_ends["ended"], list_ends  # (the list's stream ends only when the server stops)
    print(f"connections: {dict(ends)}, of the list's: {dict(list_ends)}; stops at {stopped_at}")


async def test_clients_cut_anywhere_between_pings_resume_exactly(
    make_client: AppFactory, settings: Settings, tiny: TinyPipeline
) -> None:
    """In process, with the tiny pipeline's paced progress and a ping every 50 ms: cuts land in
    pings and between a ping and the message after it, on streams whose live frames go straight
    from the feed to the socket."""
    tiny.ticks, tiny.paced = 6, {"prepare", "render"}
    stream = StreamConfig(ping_interval=0.05, retry_ms=500)
    with seeded() as rng:
        client = await make_client(
            settings=msgspec.structs.replace(settings, max_concurrent_jobs=2), stream=stream
        )
        base = str(client.make_url("")).rstrip("/")
        followers = make_followers(rng, job_ids := await submit_jobs(base))
        assert client.port is not None
        ends = await follow_all(client.port, followers, [], lambda: [])
        await check_streams(base, followers, job_ids)
    pings = sum(f.pings for f in followers)
    assert pings, "no stream was pinged"
    print(f"connections: {dict(ends)}; {pings} pings")
