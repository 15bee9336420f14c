"""A job's errors over HTTP: each with the attempt that failed, each failure once."""

from __future__ import annotations

import sqlite3
from typing import Any

from aura.engine.errors.taxonomy import TAXONOMY
from aura.http.keys import ENGINE
from aura.tests.e2e.helpers import TinyPipeline, follow, submit

ERROR_KEYS = {"code", "message", "remediation", "details", "correlationId", "step", "attempt"}


async def job_of(client: Any, job_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/jobs/{job_id}")
    assert resp.status == 200
    job: dict[str, Any] = await resp.json()
    return job


async def test_a_failed_attempt_keeps_its_numbered_error_after_a_successful_retry(
    client: Any, tiny: TinyPipeline
) -> None:
    tiny.fail = {"render": {1}}
    job_id = (await submit(client))["jobId"]
    stream = await follow(client, job_id)
    job = await job_of(client, job_id)
    assert job["status"] == "Failed"
    [error] = job["errors"]
    assert set(error) == ERROR_KEYS
    assert (error["code"], error["step"], error["attempt"]) == (
        "FFmpegFailedExitCode:1",
        "render",
        1,
    )
    # the stream's error objects say the same
    sent = [e.data["error"] for e in stream if e.event in ("step-error", "job-failed")]
    assert sent == [error, error]
    retried = await client.post(f"/api/jobs/{job_id}/retry")
    assert retried.status == 202
    await follow(client, job_id, after=job["lastSeq"])
    job = await job_of(client, job_id)
    assert (job["status"], job["attempt"]) == ("Succeeded", 2)
    assert job["errors"] == [error]  # attempt 1's, and it says so


async def test_a_run_that_fails_outside_its_step_lists_the_failure_once_with_its_step(
    client: Any, tiny: TinyPipeline
) -> None:
    # the log refuses render's StepSucceeded (as a full disk would): the run fails outside the
    # step, recording StepFailed (step render) and JobFailed (no step) with the same error
    with sqlite3.connect(client.app[ENGINE].log.path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type = 'StepSucceeded' "
            "AND NEW.step = 'render' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    job_id = (await submit(client))["jobId"]
    stream = await follow(client, job_id)
    with sqlite3.connect(client.app[ENGINE].log.path) as conn:
        conn.execute("DROP TRIGGER refuse")
    [step_error] = [e.data["error"] for e in stream if e.event == "step-error"]
    [job_error] = [e.data["error"] for e in stream if e.event == "job-failed"]
    assert (step_error["step"], job_error["step"]) == ("render", None)
    job = await job_of(client, job_id)
    assert job["status"] == "Failed"
    assert [(e["code"], e["step"], e["attempt"]) for e in job["errors"]] == [
        ("Internal", "render", 1)
    ]
    assert job["errors"] == [step_error]


async def test_the_openapi_error_object_has_the_attempt_and_no_code_is_only_reserved(
    client: Any,
) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    schemas = document["components"]["schemas"]
    errors = schemas["JobView"]["properties"]["errors"]
    assert errors["items"] == {"$ref": "#/components/schemas/ErrorInfo"}
    attempt = schemas["ErrorInfo"]["properties"]["attempt"]
    assert {"type": "integer"} in attempt["anyOf"]
    codes = {e["code"] for e in (await (await client.get("/api/errors")).json())["errors"]}
    assert codes == set(TAXONOMY) and "Canceled" not in codes
