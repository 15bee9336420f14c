"""The SSE bench's client process: follows streams and reports each event's delay.

`python -m bench._sse_client EXPECTED [SINCE]` reads a JSON list of stream URLs on stdin, opens
every stream, prints `ready` once each has its first bytes, reads every stream to its end and
prints one JSON object: `append` (seconds from each event's `ts` to its receipt), `stamps` (each
event's `ts`, epoch seconds), `sched` (seconds from the moment each event was scheduled, its
`message`) and `lost` (EXPECTED events per stream less those received).

Without SINCE only `StepProgressed` events count (bench/sse.py's cases append them with their
scheduled time as the message). With SINCE (epoch seconds), every event whose `ts` is at or
after it counts, whatever its type, and `sched` stays empty: a real render's events
(bench/_sse_render.py), the ones before SINCE being the stream's replay of the log.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Any

import aiohttp
import msgspec

__all__ = ["follow_all"]


async def follow_all(urls: list[str], expected: int, since: float | None) -> dict[str, Any]:
    """Open every stream, say `ready`, read to the end; latencies in seconds, losses."""
    append: list[float] = []
    stamps: list[float] = []
    sched: list[float] = []
    lost = 0
    ready = asyncio.Event()
    connected = 0
    decoder = msgspec.json.Decoder()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)

    async def follow(session: aiohttp.ClientSession, url: str) -> None:
        nonlocal connected, lost
        got = 0
        async with session.get(url) as resp:
            buffer = b""
            first = True
            async for chunk in resp.content.iter_any():
                now = time.time()
                if first:
                    first = False
                    connected += 1
                    if connected == len(urls):
                        ready.set()
                buffer += chunk
                *messages, buffer = buffer.split(b"\n\n")
                for message in messages:
                    if b"data: " not in message:  # retry hint, ping
                        continue
                    data = decoder.decode(message.rsplit(b"data: ", 1)[1])
                    kind = data.get("type")
                    if kind is None or (since is None and kind != "StepProgressed"):
                        continue
                    stamp = datetime.fromisoformat(data["ts"].replace("Z", "+00:00")).timestamp()
                    if since is not None and stamp < since:
                        continue
                    got += 1
                    append.append(now - stamp)
                    stamps.append(stamp)
                    if since is None:
                        sched.append(now - float(data["message"]))
        lost += expected - got

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(follow(session, url)) for url in urls]
        await ready.wait()
        print("ready", flush=True)
        await asyncio.gather(*tasks)
    return {"append": append, "stamps": stamps, "sched": sched, "lost": lost}


def main(argv: list[str]) -> None:
    expected, *since = argv
    urls = json.loads(sys.stdin.readline())
    start = float(since[0]) if since else None
    print(json.dumps(asyncio.run(follow_all(urls, int(expected), start))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
