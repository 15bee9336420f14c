"""`GET /api/jobs` pages by cursor (keyset) as well as by offset, on a real server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from aura.tests.e2e.helpers import TinyPipeline, finished_job, submit
from aura.tests.e2e.test_http_api import problem

pytestmark = pytest.mark.both_backends

LIST_KEYS = {"jobs", "limit", "offset", "nextOffset", "nextCursor", "lastSeq", "rebuilding"}


async def pages(client: Any, first: str) -> list[dict[str, Any]]:
    """Every page from `first` on, each next one by the previous one's nextCursor."""
    found = [await (await client.get(first)).json()]
    while found[-1]["nextCursor"] is not None:
        params = {"cursor": found[-1]["nextCursor"], "limit": str(found[-1]["limit"])}
        resp = await client.get("/api/jobs", params=params)
        assert resp.status == 200, await resp.text()
        found.append(await resp.json())
    return found


def ids(page: dict[str, Any]) -> list[str]:
    return [job["jobId"] for job in page["jobs"]]


def cursor_of(body: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def body_of(cursor: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


async def test_cursor_pages_walk_the_list_as_offset_pages_do(client: Any) -> None:
    jobs = [await finished_job(client) for _ in range(7)]
    newest_first = [job["jobId"] for job in reversed(jobs)]
    walked = await pages(client, "/api/jobs?limit=3")
    assert [ids(page) for page in walked] == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    assert all(set(page) == LIST_KEYS for page in walked)
    assert walked[0]["offset"] == 0 and walked[0]["nextOffset"] == 3
    # a page that starts at a cursor has no offset to tell
    assert [(p["offset"], p["nextOffset"]) for p in walked[1:]] == [(None, None), (None, None)]
    assert walked[-1]["nextCursor"] is None
    by_offset = await (await client.get("/api/jobs?limit=3&offset=3")).json()
    assert ids(by_offset) == ids(walked[1]) and by_offset["nextCursor"] == walked[1]["nextCursor"]
    last = await (await client.get("/api/jobs?limit=1&offset=6")).json()
    assert ids(last) == newest_first[6:] and last["nextCursor"] is None  # a full last page


async def test_a_cursor_stays_put_while_jobs_are_created_above_it(client: Any) -> None:
    jobs = [await finished_job(client) for _ in range(4)]
    first = await (await client.get("/api/jobs?limit=2")).json()
    newer = await submit(client)  # lands on top: an offset would now show a row again
    resp = await client.get("/api/jobs", params={"limit": "2", "cursor": first["nextCursor"]})
    rest = await resp.json()
    assert ids(rest) == [jobs[1]["jobId"], jobs[0]["jobId"]]
    by_offset = await (await client.get("/api/jobs?limit=2&offset=2")).json()
    assert ids(by_offset)[0] == jobs[2]["jobId"]  # the row the first page ended with, again
    assert newer["jobId"] not in ids(rest)
    # the page and its lastSeq are one snapshot, as a first page's are
    health = await (await client.get("/api/health")).json()
    assert rest["lastSeq"] <= health["lastSeq"] and rest["lastSeq"] >= first["lastSeq"]


async def test_a_cursor_carries_the_status_filter(client: Any, tiny: TinyPipeline) -> None:
    tiny.fail["render"] = {1}
    failed = [await finished_job(client) for _ in range(3)]
    tiny.fail.clear()
    await finished_job(client)  # a Succeeded job between: not on the Failed pages
    first = await (await client.get("/api/jobs?status=Failed&limit=2")).json()
    assert ids(first) == [failed[2]["jobId"], failed[1]["jobId"]]
    cursor = first["nextCursor"]
    for params in ({"cursor": cursor}, {"cursor": cursor, "status": "Failed"}):
        rest = await (await client.get("/api/jobs", params=params)).json()
        assert ids(rest) == [failed[0]["jobId"]] and rest["nextCursor"] is None
    other = {"cursor": first["nextCursor"], "status": "Succeeded"}
    await problem(await client.get("/api/jobs", params=other), 400, "InvalidInput:cursor")
    unfiltered = await (await client.get("/api/jobs?limit=2")).json()
    with_status = {"cursor": unfiltered["nextCursor"], "status": "Failed"}
    await problem(await client.get("/api/jobs", params=with_status), 400, "InvalidInput:cursor")


async def test_a_malformed_or_altered_cursor_is_refused(client: Any) -> None:
    jobs = [await finished_job(client) for _ in range(3)]
    good = (await (await client.get("/api/jobs?limit=1")).json())["nextCursor"]
    version, status, created, job_id = body_of(good)
    assert (version, status, job_id) == (1, None, jobs[2]["jobId"])
    other = jobs[0]["jobId"]
    refused = {
        "empty": "",
        "not base64url": good[:-2] + "+/",
        "padded": good + "==",
        "too long": "A" * 513,
        "cut short": good[:-3],
        "not JSON": base64.urlsafe_b64encode(b"[1, nul").rstrip(b"=").decode(),
        "not an array": cursor_of({"created": created, "job": job_id}),
        "another version": cursor_of([2, None, created, job_id]),
        "no such status": cursor_of([1, "Done", created, job_id]),
        "not a time": cursor_of([1, None, "yesterday", job_id]),
        "a time otherwise written": cursor_of([1, None, created[:19] + "Z", job_id]),
        "time altered": cursor_of([1, None, "2001" + created[4:], job_id]),
        "another job's time": cursor_of([1, None, created, other]),
        "no such job": cursor_of([1, None, created, "f" * 32]),
        "a job id not text": cursor_of([1, None, created, 7]),
        "extra member": cursor_of([1, None, created, job_id, 0]),
        "bytes not UTF-8": base64.urlsafe_b64encode(b"\xff\xfe[1]").rstrip(b"=").decode(),
    }
    spaced = json.dumps([1, None, created, job_id], separators=(", ", ": "))  # the same, spaced
    refused["spelled otherwise"] = base64.urlsafe_b64encode(spaced.encode()).decode().rstrip("=")
    for why, cursor in refused.items():
        resp = await client.get("/api/jobs", params={"cursor": cursor})
        body = await problem(resp, 400, "InvalidInput:cursor")
        assert cursor == "" or cursor not in body["detail"], why  # never echoed
    both = {"cursor": good, "offset": "1"}
    await problem(await client.get("/api/jobs", params=both), 400, "InvalidInput:cursor")
    resp = await client.get("/api/jobs", params={"cursor": good})
    assert resp.status == 200 and ids(await resp.json()) == [jobs[1]["jobId"], jobs[0]["jobId"]]


async def test_offset_and_limit_bounds(client: Any) -> None:
    deepest = await (await client.get("/api/jobs?offset=1000000000&limit=500")).json()
    assert deepest["jobs"] == [] and deepest["nextCursor"] is None
    for query in ("offset=1000000001", "offset=-1", "limit=501", "limit=0", "offset=1e3"):
        name = query.split("=")[0]
        await problem(await client.get(f"/api/jobs?{query}"), 400, f"InvalidInput:{name}")
