"""The REST API on a real server: shapes, problem+json, idempotency, actions, log, output."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
from yarl import URL

from aura.engine.config.settings import Settings
from aura.http.keys import ENGINE, MAX_BODY_BYTES
from aura.tests.e2e.helpers import (
    TINY_STEPS,
    VIDEO_BYTES,
    TinyPipeline,
    finished_job,
    follow,
    log_lines,
    submit,
)

pytestmark = pytest.mark.both_backends

JOB_KEYS = {
    "jobId",
    "preset",
    "status",
    "attempt",
    "steps",
    "output",
    "warnings",
    "errors",
    "createdUtc",
    "startedUtc",
    "endedUtc",
    "correlationId",
    "outputPrunedUtc",
    "unrecorded",
    "lastSeq",
    "etaSeconds",
}
STEP_KEYS = {"name", "status", "progressPct", "etaSeconds", "attempt", "startedUtc", "endedUtc"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "remediation", "correlationId"}


async def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = await resp.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status and body["code"] == code
    assert body["title"] and body["detail"] and body["remediation"] and body["correlationId"]
    assert body["type"] == "/api/errors#" + code.split(":")[0]
    return body


async def test_create_answers_201_with_the_job_in_the_exact_shape(client: Any) -> None:
    resp = await client.post("/api/jobs", json={"preset": "sample-hello-youtube"})
    assert resp.status == 201
    job = await resp.json()
    assert resp.headers["Location"] == f"/api/jobs/{job['jobId']}"
    assert set(job) == JOB_KEYS
    assert job["status"] == "Queued" and job["attempt"] == 1 and job["output"] is None
    assert [s["name"] for s in job["steps"]] == list(TINY_STEPS)
    await follow(client, job["jobId"])
    done = await (await client.get(f"/api/jobs/{job['jobId']}")).json()
    assert set(done) == JOB_KEYS
    assert all(set(step) == STEP_KEYS for step in done["steps"])
    assert done["status"] == "Succeeded"
    assert [s["status"] for s in done["steps"]] == ["Succeeded"] * 3
    assert set(done["output"]) == {"videoPath", "sizeBytes", "durationSeconds", "sha256"}
    assert done["endedUtc"].endswith("Z") and done["startedUtc"] >= done["createdUtc"]


async def test_invalid_input_is_a_400_problem_naming_the_field(client: Any) -> None:
    resp = await client.post("/api/jobs", json={"options": {"quality": "ultra"}})
    await problem(resp, 400, "InvalidInput:options.quality")
    resp = await client.post("/api/jobs", json={"preset": "default"})
    await problem(resp, 400, "InvalidInput:brief")
    headers = {"X-Correlation-Id": "abc-1", "Content-Type": "application/json"}
    resp = await client.post("/api/jobs", data=b"{not json", headers=headers)
    body = await problem(resp, 400, "InvalidInput:body")
    assert body["correlationId"] == "abc-1" and resp.headers["X-Correlation-Id"] == "abc-1"


async def test_a_body_that_is_not_utf8_is_a_400_not_a_500(client: Any) -> None:
    json_type = {"Content-Type": "application/json"}
    bad = b'{"brief": {"title": "caf\xe9"}}'  # Latin-1, not UTF-8
    body = await problem(
        await client.post("/api/jobs", data=bad, headers=json_type), 400, "InvalidInput:body"
    )
    assert "UTF-8" in body["detail"]
    job = await submit(client)
    for action in ("cancel", "retry", "rerun"):
        resp = await client.post(f"/api/jobs/{job['jobId']}/{action}", data=bad, headers=json_type)
        await problem(resp, 400, "InvalidInput:body")
    resp = await client.post("/api/session", data=b'{"token": "\xff"}', headers=json_type)
    await problem(resp, 400, "InvalidInput:token")


async def test_json_nested_too_deeply_is_a_400_not_a_500(client: Any) -> None:
    json_type = {"Content-Type": "application/json"}
    deep = b"[" * 100_000  # under the body limit, past the decoder's recursion
    await problem(
        await client.post("/api/jobs", data=deep, headers=json_type), 400, "InvalidInput:body"
    )
    job = await submit(client)
    for action in ("cancel", "retry", "rerun"):
        resp = await client.post(f"/api/jobs/{job['jobId']}/{action}", data=deep, headers=json_type)
        body = await problem(resp, 400, "InvalidInput:body")
        assert "nested" in body["detail"]


async def test_a_field_name_in_an_error_code_is_bounded_and_plain(client: Any) -> None:
    resp = await client.post("/api/jobs", json={"brief": {"x" * 200_000: 1}})
    body = await problem(resp, 400, f"InvalidInput:{('brief.' + 'x' * 200_000)[:80]}...")
    assert len(body["detail"]) < 500
    timeouts = {"mux\n\u001b[31mRED": 5}
    resp = await client.post("/api/jobs", json={"options": {"timeouts": timeouts}})
    body = await problem(resp, 400, "InvalidInput:options.timeouts.mux???31mRED")
    assert "\n" not in body["detail"] and "\u001b" not in body["detail"]
    assert "mux\\n\\x1b[31mRED" in body["detail"]  # shown escaped


@pytest.mark.sqlite_only
async def test_a_log_that_cannot_grow_is_a_507_out_of_disk_space(client: Any) -> None:
    def no_more_pages(conn: sqlite3.Connection) -> None:  # as a full disk would answer
        conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")

    await client.app[ENGINE].log.run_on_writer(no_more_pages)
    brief = {"title": "Fill", "script": ["A line to fill the log's last pages."] * 20}
    for _ in range(500):  # each job takes room in the pages there are, until none is left
        resp = await client.post("/api/jobs", json={"preset": "default", "brief": brief})
        if resp.status != 201:
            break
    body = await problem(resp, 507, "OutOfDiskSpace")
    assert "full" in body["detail"]


async def test_a_bad_timeout_is_a_400_naming_its_step(client: Any) -> None:
    for value in (-1, 0, True, "soon", 10**6):
        body = {"options": {"timeouts": {"broll": 30, "mux": value}}}
        resp = await client.post("/api/jobs", json=body)
        await problem(resp, 400, "InvalidInput:options.timeouts.mux")
    huge = b'{"options": {"timeouts": {"broll": 30, "mux": 1e400}}}'  # past a double's range
    resp = await client.post("/api/jobs", data=huge, headers={"Content-Type": "application/json"})
    await problem(resp, 400, "InvalidInput:options.timeouts.mux")


async def test_a_nul_character_in_the_brief_is_a_400_not_a_failed_render(client: Any) -> None:
    brief = {"title": "Fine", "script": ["ok", "bad\u0000line"]}
    resp = await client.post("/api/jobs", json={"preset": "default", "brief": brief})
    await problem(resp, 400, "InvalidInput:brief.script[1]")
    brief = {"title": "bad\u0000title", "script": ["ok"]}
    resp = await client.post("/api/jobs", json={"preset": "default", "brief": brief})
    await problem(resp, 400, "InvalidInput:brief.title")


async def test_blank_or_control_text_and_a_brief_without_script_are_400s(client: Any) -> None:
    # each would render silence, an empty cue or text nobody wrote
    for brief, field in (
        ({"title": "Fine", "script": ["ok", "   "]}, "brief.script[1]"),
        ({"title": "Fine", "script": ["\u200b\u200b", "ok"]}, "brief.script[0]"),
        ({"title": "Fine", "script": ["ok", "bell\u0001"]}, "brief.script[1]"),
        ({"title": "Fine", "script": ["two\nlines"]}, "brief.script[0]"),
        ({"title": "\ufeff\u2060", "script": ["ok"]}, "brief.title"),
        ({"title": "Fine", "script": ["ok"], "voice": "en-us\n"}, "brief.voice"),
        ({"title": " \n", "script": ["ok"]}, "brief.title"),
        ({"title": "Only a title"}, "brief.script"),
    ):
        for preset in ("default", "sample-hello-youtube"):  # a brief given is rendered
            resp = await client.post("/api/jobs", json={"preset": preset, "brief": brief})
            await problem(resp, 400, f"InvalidInput:{field}")


async def test_idempotency_key_returns_the_same_job_for_the_same_body(client: Any) -> None:
    body = {"preset": "sample-hello-youtube", "options": {"quality": "draft"}}
    headers = {"Idempotency-Key": "key-1"}
    first = await client.post("/api/jobs", json=body, headers=headers)
    assert first.status == 201
    again = await client.post("/api/jobs", json=body, headers=headers)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["jobId"] == (await first.json())["jobId"]
    other = await client.post("/api/jobs", json={"options": {"quality": "high"}}, headers=headers)
    body = await problem(other, 409, "InvalidState")
    assert "Idempotency-Key" in body["remediation"]


async def test_an_idempotency_key_that_is_not_utf8_is_a_400(client: Any) -> None:
    # aiohttp's client refuses to send such a header: write the request by hand
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    body = b'{"preset": "sample-hello-youtube"}'
    writer.write(
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Idempotency-Key: k\xff\xfe\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer = await reader.read()
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(payload)["code"] == "InvalidInput:Idempotency-Key"


async def test_unknown_job_is_404_and_unknown_routes_are_problems(client: Any) -> None:
    for path in ("/api/jobs/nope", "/api/jobs/nope/log", "/api/jobs/nope/output"):
        await problem(await client.get(path), 404, "JobNotFound")
    await problem(await client.post("/api/jobs/nope/retry"), 404, "JobNotFound")
    long_id = "x" * 6000  # its whole length comes back in no answer
    answer = await (await client.get(f"/api/jobs/{long_id}")).json()
    assert answer["code"] == "JobNotFound" and len(answer["detail"]) < 200, answer
    await problem(await client.get("/api/nothing-here"), 404, "NotFound")
    resp = await client.delete("/api/jobs")
    await problem(resp, 405, "MethodNotAllowed")
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


async def test_retry_of_a_running_job_is_409(client: Any, tiny: TinyPipeline) -> None:
    gate = tiny.gate("render")
    job = await submit(client)
    await gate.entered.wait()
    body = await problem(await client.post(f"/api/jobs/{job['jobId']}/retry"), 409, "InvalidState")
    assert job["jobId"] in body["detail"]
    gate.open()


async def test_cancel_retry_and_rerun_answer_202_with_the_job(
    client: Any, tiny: TinyPipeline
) -> None:
    gate = tiny.gate("render")
    job = await submit(client)
    job_id = job["jobId"]
    await gate.entered.wait()
    resp = await client.post(f"/api/jobs/{job_id}/cancel")
    assert resp.status == 202
    canceled = await resp.json()
    assert canceled["status"] == "Canceled" and set(canceled) == JOB_KEYS
    await problem(await client.post(f"/api/jobs/{job_id}/cancel"), 409, "InvalidState")
    events = await follow(client, job_id)
    assert events[-1].event == "job-canceled"
    assert any(e.data["type"] == "JobCancelRequested" for e in events)
    del tiny.gates["render"]
    resp = await client.post(f"/api/jobs/{job_id}/retry", json={})
    assert resp.status == 202 and (await resp.json())["attempt"] == 2
    assert (await follow(client, job_id, after=events[-1].id))[-1].event == "job-completed"
    resp = await client.post(f"/api/jobs/{job_id}/rerun")
    assert resp.status == 202
    rerun = await resp.json()
    assert rerun["jobId"] != job_id and rerun["attempt"] == 1
    assert resp.headers["Location"] == f"/api/jobs/{rerun['jobId']}"
    await problem(
        await client.post(f"/api/jobs/{job_id}/rerun", json=[1]), 400, "InvalidInput:body"
    )
    await follow(client, rerun["jobId"])


async def test_list_filters_by_status_and_pages(client: Any, tiny: TinyPipeline) -> None:
    done = [await finished_job(client) for _ in range(3)]
    gate = tiny.gate("prepare")
    running = await submit(client)
    await gate.entered.wait()
    page = await (await client.get("/api/jobs?limit=2")).json()
    keys = {"jobs", "limit", "offset", "nextOffset", "nextCursor", "lastSeq", "rebuilding"}
    assert set(page) == keys and page["rebuilding"] is False
    assert [j["jobId"] for j in page["jobs"]] == [running["jobId"], done[2]["jobId"]]
    assert page["nextOffset"] == 2
    page2 = await (await client.get("/api/jobs?limit=2&offset=2")).json()
    assert [j["jobId"] for j in page2["jobs"]] == [done[1]["jobId"], done[0]["jobId"]]
    assert page2["nextOffset"] is None  # a full last page says so too
    ok = await (await client.get("/api/jobs?status=Succeeded")).json()
    assert {j["jobId"] for j in ok["jobs"]} == {j["jobId"] for j in done}
    run = await (await client.get("/api/jobs?status=Running")).json()
    assert [j["jobId"] for j in run["jobs"]] == [running["jobId"]]
    await problem(await client.get("/api/jobs?status=Done"), 400, "InvalidInput:status")
    await problem(await client.get("/api/jobs?limit=0"), 400, "InvalidInput:limit")
    for name in ("limit", "offset"):  # past int()'s 4,300 digits: a 400, not a 500
        resp = await client.get(f"/api/jobs?{name}={'9' * 5000}")
        await problem(resp, 400, f"InvalidInput:{name}")
    gate.open()


async def test_log_is_ndjson_of_the_raw_events(client: Any) -> None:
    job = await finished_job(client)
    lines = await log_lines(client, job["jobId"])
    assert all(
        set(line) == {"seq", "version", "type", "step", "attempt", "ts", "data"} for line in lines
    )
    assert [line["version"] for line in lines] == list(range(1, len(lines) + 1))
    assert lines[0]["type"] == "JobCreated" and lines[-1]["type"] == "JobSucceeded"
    assert lines[0]["data"]["preset"] == "sample-hello-youtube"
    assert {line["step"] for line in lines if line["type"] == "StepStarted"} == set(TINY_STEPS)


async def test_every_response_names_its_correlation_id(client: Any) -> None:
    job = await finished_job(client)
    for path in ("log", "events", "output", "diagnostics", ""):
        url = f"/api/jobs/{job['jobId']}/{path}".rstrip("/")
        resp = await client.get(url, headers={"X-Correlation-Id": f"c-{path}"})
        await resp.read()
        assert resp.headers["X-Correlation-Id"] == f"c-{path}", url


async def test_output_download_supports_range_requests(client: Any) -> None:
    job = await finished_job(client)
    url = f"/api/jobs/{job['jobId']}/output"
    resp = await client.get(url)
    assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"
    assert await resp.read() == VIDEO_BYTES
    assert resp.headers["Accept-Ranges"] == "bytes"
    part = await client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(VIDEO_BYTES)}"
    assert await part.read() == VIDEO_BYTES[100:200]
    tail = await client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status == 206 and await tail.read() == VIDEO_BYTES[-10:]
    etag = resp.headers["ETag"]
    same = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status == 206 and await same.read() == VIDEO_BYTES[:10]


async def test_output_conditions_answer_412_as_a_problem_and_304_empty(client: Any) -> None:
    job = await finished_job(client)
    url = f"/api/jobs/{job['jobId']}/output"
    first = await client.get(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for failed in (
        {"If-Match": '"another-file"'},
        {"If-Match": f"W/{etag}"},  # a weak tag never matches If-Match
        {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
        {"If-Match": '"another-file"', "Range": "bytes=0-9"},
    ):
        await problem(await client.get(url, headers=failed), 412, "PreconditionFailed")
    for served in ({"If-Match": etag}, {"If-Match": "*"}, {"If-Match": f'"x", {etag}'}):
        resp = await client.get(url, headers=served)
        assert resp.status == 200 and await resp.read() == VIDEO_BYTES, served
    for current in ({"If-None-Match": etag}, {"If-Modified-Since": modified}):
        resp = await client.get(url, headers=current)
        assert resp.status == 304 and await resp.read() == b"", current


async def test_output_ranges_it_cannot_serve_are_ignored_or_a_416_problem(client: Any) -> None:
    job = await finished_job(client)
    url = f"/api/jobs/{job['jobId']}/output"
    size = len(VIDEO_BYTES)
    for ignored in (
        {"Range": "items=0-9"},
        {"Range": "bytes=0-1,5-6"},
        {"Range": "bytes=0-9", "If-Range": '"another-file"'},  # the file changed: all of it
        {"Range": "bytes=0-9", "If-Range": "Mon, 99 Foo 2026"},  # no date: it matches no file
        {"Range": "bytes=0-" + "9" * 5000},  # past int()'s 4,300 digits: all of it, not a 500
        {"Range": "bytes=-" + "9" * 5000},
    ):
        resp = await client.get(url, headers=ignored)
        assert resp.status == 200, ignored
        assert await resp.read() == VIDEO_BYTES
        assert resp.headers["Content-Type"] == "video/mp4"
        assert int(resp.headers["Content-Length"]) == size
    for unsatisfiable in (f"bytes={size}-", "bytes=-0", "bytes=9-0", "bytes=" + "9" * 5000 + "-"):
        resp = await client.get(url, headers={"Range": unsatisfiable})
        await problem(resp, 416, "RangeNotSatisfiable")
        assert resp.headers["Content-Range"] == f"bytes */{size}"
    state = await (await client.get(f"/api/jobs/{job['jobId']}")).json()
    assert state["output"]["sha256"] == hashlib.sha256(VIDEO_BYTES).hexdigest()


async def test_a_head_gets_no_content_and_its_connection_serves_on(client: Any) -> None:
    """A HEAD of the log, or of the video with a Range it ignores, got the content after its
    head (a StreamResponse sends what is written, for a HEAD too): the connection's next answer
    came after those bytes, which a client reads as that answer."""
    job_url = f"/api/jobs/{(await finished_job(client))['jobId']}"
    host = "Host: 127.0.0.1\r\n"
    for path, extra in ((f"{job_url}/log", ""), (f"{job_url}/output", "Range: items=0-9\r\n")):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        writer.write(
            f"HEAD {path} HTTP/1.1\r\n{host}{extra}\r\n"
            f"GET /api/health HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode()
        )
        answers = await asyncio.wait_for(reader.read(), 10)  # both, up to the close
        writer.close()
        head, _, after_head = answers.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), answers[:300]
        assert after_head.startswith(b"HTTP/1.1 200 "), (path, after_head[:100])


async def test_output_of_an_unfinished_job_is_404(client: Any, tiny: TinyPipeline) -> None:
    gate = tiny.gate("prepare")
    job = await submit(client)
    await gate.entered.wait()
    await problem(await client.get(f"/api/jobs/{job['jobId']}/output"), 404, "NotFound")
    gate.open()


async def test_no_file_outside_the_data_folder_is_served(
    client: Any, tiny: TinyPipeline, tmp_path: Path
) -> None:
    # jobs whose recorded output lies outside the data folder: by an absolute path, and by a
    # relative one climbing out of the job's folder (data/jobs/ID/../../../outside)
    outside = tmp_path / "outside" / "secret.mp4"
    for recorded in (outside, Path("../../../outside/secret.mp4")):
        outside.unlink(missing_ok=True)
        tiny.output_path = recorded
        job = await finished_job(client)
        assert outside.read_bytes() == VIDEO_BYTES  # the file is there, and never served
        await problem(await client.get(f"/api/jobs/{job['jobId']}/output"), 404, "NotFound")
    base = str(client.make_url("/")).rstrip("/")
    for path in ("/api/jobs/..%2F..%2Fetc%2Fpasswd/output", "/api/jobs/../../etc/passwd/output"):
        # sent as written: the client must not resolve the dots itself
        async with client.session.get(URL(base + path, encoded=True)) as resp:
            assert resp.status == 404
            assert b"root:" not in await resp.read()


async def test_request_bodies_are_size_bounded(client: Any) -> None:
    big = json.dumps({"preset": "default", "brief": {"title": "x" * MAX_BODY_BYTES}})
    json_type = {"Content-Type": "application/json"}
    resp = await client.post("/api/jobs", data=big, headers=json_type)
    await problem(resp, 413, "PayloadTooLarge")
    resp = await client.post(
        "/api/jobs/x/cancel", data=b"{" + b" " * MAX_BODY_BYTES + b"}", headers=json_type
    )
    await problem(resp, 413, "PayloadTooLarge")


async def test_diagnostics_say_whether_the_server_requires_a_token(make_client: Any) -> None:
    token = "diagnostics-token-0123"
    client = await make_client(token=token)
    auth = {"Authorization": f"Bearer {token}"}
    job = await (await client.post("/api/jobs", json={}, headers=auth)).json()
    resp = await client.get(f"/api/jobs/{job['jobId']}/diagnostics", headers=auth)
    text = await resp.text()
    assert token not in text
    assert json.loads(text)["system"]["authRequired"] is True


async def test_errors_health_and_system_check(
    client: Any, make_client: Any, tmp_path: Path
) -> None:
    health = await client.get("/api/health")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    errors = (await (await client.get("/api/errors")).json())["errors"]
    codes = {e["code"] for e in errors}
    assert {"InvalidInput", "JobNotFound", "FFmpegNotFound", "MissingApiKey"} <= codes
    assert all(e["remediation"] and e["httpStatus"] >= 400 for e in errors)
    check = await (await client.get("/api/system-check")).json()
    assert check["ok"] is True  # this machine renders (make setup installs what it needs)
    by_check = {f["check"]: f for f in check["findings"]}
    assert {"ffmpeg", "disk"} <= set(by_check)
    failing = [f for f in check["findings"] if f["status"] != "ok"]
    assert all(f["code"] and f["remediation"] for f in failing)
    # without ffmpeg it is not ready, and says what to do
    broken = Settings(data_dir=tmp_path / "other", ffmpeg_path="aura-no-ffmpeg-here")
    other = await make_client(settings=broken)
    check = await (await other.get("/api/system-check")).json()
    assert check["ok"] is False
    [ffmpeg] = [f for f in check["findings"] if f["check"] == "ffmpeg"]
    assert ffmpeg["status"] == "error" and ffmpeg["code"] == "FFmpegNotFound"
    assert ffmpeg["remediation"]


async def test_diagnostics_bundle_events_state_and_system_without_secrets(
    make_client: Any, settings: Settings
) -> None:
    secret = "sk-test-0123456789abcdef"
    endpoint = "http://alice:hunter2pass@127.0.0.1:9/v1"  # a password in the URL is a secret too
    body = {"preset": "default", "brief": {"title": f"leak {secret}", "script": ["Hi."]}}
    first = await make_client()  # no key configured yet: the brief is stored as given
    job = await submit(first, **body)
    await follow(first, job["jobId"])
    await first.close()  # the data folder is free again
    client = await make_client(
        settings=msgspec.structs.replace(settings, openai_api_key=secret, openai_base_url=endpoint)
    )
    # now the key is configured: a brief holding it is refused, never stored
    resp = await client.post("/api/jobs", json=body)
    assert resp.status == 400 and (await resp.json())["code"] == "InvalidInput:brief.title"
    assert secret not in await (await client.get(f"/api/jobs/{job['jobId']}/log")).text()
    resp = await client.get(f"/api/jobs/{job['jobId']}/diagnostics")
    text = await resp.text()
    assert secret not in text
    bundle = json.loads(text)
    assert set(bundle) >= {"jobId", "correlationId", "state", "events", "system"}
    assert bundle["state"]["status"] == "Succeeded"
    assert len(bundle["events"]) == len(await log_lines(client, job["jobId"]))
    assert bundle["system"]["settings"]["openaiKeyConfigured"] is True
    assert bundle["system"]["settings"]["openai_base_url"] == "http://127.0.0.1:9/v1"
    assert "hunter2pass" not in text
    assert bundle["system"]["authRequired"] is False
    assert "[REDACTED]" in bundle["events"][0]["data"]["brief"]["title"]
    assert secret not in await (await client.get("/api/system-check")).text()
