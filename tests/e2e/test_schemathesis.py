"""Hostile input from the API's own document: schemathesis generates requests for every operation
of `/api/openapi.json` (valid ones, and ones the document refuses) and sends them to a real
`aura serve`. No answer may be a 5xx, or have a status, content type, headers or body the
document does not give that operation (a refusal is problem+json, as the document says).

Path ids are drawn from real jobs (one Succeeded with its video, one Failed, one Canceled) as well
as generated ones, so cancel, retry, rerun, the log, the diagnostics and the video's ranges are
reached and not only their 404. The server renders one job at a time with one ffmpeg thread
(the jobs the test creates wait as Queued). The examples are bounded and derandomized: the same
requests on every run. Each operation's strategy (`APIOperation.as_strategy`) runs under
hypothesis here: schemathesis's own pytest integration fails on pytest 9.2 (it sets a test's
`_nodeid`, which pytest no longer has).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aura.http.openapi import OPERATIONS, Operation
from aura.tests.e2e.raw_http import ANSWER_TIMEOUT, Served, aura_serve

ApiCase = schemathesis.Case[Any]
ApiOperation = schemathesis.APIOperation[Any, Any, Any, Any]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: operations whose 200 is a live stream: only its head is read (it may never end)
STREAMS = {"/api/jobs/{id}/events", "/api/events"}
#: requests generated per operation and mode (valid, and refused by the document)
EXAMPLES = 25
#: seconds a job of the fixture has to end (a short draft render)
RENDER_TIMEOUT = 180.0
SHORT_JOB = {
    "preset": "default",
    "brief": {"title": "Schemathesis", "script": ["One short line."]},
    "options": {"quality": "draft", "encoder": "x264"},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    with aura_serve(data_dir, AURA_MAX_CONCURRENT_JOBS="1", AURA_FFMPEG_THREADS="1") as server:
        yield server


def base_url(served: Served) -> str:
    return f"http://127.0.0.1:{served.port}"


def wait_ended(api: httpx.Client, job_id: str) -> str:
    """The status `job_id` ends in (asserting it ends within RENDER_TIMEOUT)."""
    deadline = time.monotonic() + RENDER_TIMEOUT
    while time.monotonic() < deadline:
        status: str = api.get(f"/api/jobs/{job_id}").json()["status"]
        if status not in ("Queued", "Running"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end within {RENDER_TIMEOUT} s")


@pytest.fixture(scope="module")
def job_ids(served: Served) -> tuple[str, ...]:
    """Ids of a Succeeded job (with a video), a Failed one, a Canceled one, and of no job."""
    with httpx.Client(base_url=base_url(served), timeout=ANSWER_TIMEOUT) as api:
        succeeded = api.post("/api/jobs", json=SHORT_JOB).json()["jobId"]
        assert wait_ended(api, succeeded) == "Succeeded"
        no_key = {**SHORT_JOB, "brief": {**SHORT_JOB["brief"], "tts": "openai"}}  # type: ignore[dict-item]
        failed = api.post("/api/jobs", json=no_key).json()["jobId"]
        assert wait_ended(api, failed) == "Failed"
        canceled = api.post("/api/jobs", json=SHORT_JOB).json()["jobId"]
        assert api.post(f"/api/jobs/{canceled}/cancel").status_code == 202
        assert wait_ended(api, canceled) == "Canceled"
    return succeeded, failed, canceled, "0" * 32


@pytest.fixture(scope="module")
def api_schema(served: Served) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(
        f"{base_url(served)}/api/openapi.json", config=schemathesis.Config()
    )


def cases(
    operation: ApiOperation, mode: GenerationMode, job_ids: tuple[str, ...]
) -> st.SearchStrategy[ApiCase]:
    """`operation`'s generated requests; one with a job id names a real job or a generated id."""
    generated = operation.as_strategy(mode)
    if "{id}" not in operation.path:
        return generated
    real = [operation.as_strategy(mode, path_parameters={"id": job_id}) for job_id in job_ids]
    return st.one_of(generated, *real)


def streamed_head(case: ApiCase, base: str) -> schemathesis.Response:
    """The answer to `case` with only the head of a live event stream (its body may never end):
    the checks need its status and headers; another answer is read whole."""
    kwargs = case.as_transport_kwargs(base_url=base)
    with requests.request(**kwargs, stream=True, timeout=ANSWER_TIMEOUT) as answer:
        live = answer.headers.get("Content-Type", "").startswith("text/event-stream")
        body = b"" if live else answer.content
        return schemathesis.Response(
            status_code=answer.status_code,
            headers={name: answer.raw.headers.getlist(name) for name in answer.raw.headers},
            content=body,
            request=answer.request,
            elapsed=answer.elapsed.total_seconds(),
            verify=True,
        )


def refusable(op: Operation) -> bool:
    """Whether the document refuses some request of `op`: one with a body, or a parameter
    constrained beyond "any string" (else schemathesis has no invalid request to make)."""
    free = {"type", "examples"}
    return op.body is not None or any(set(p["schema"]) - free for p in op.parameters)


#: (method, path, mode) of every operation: valid requests, and ones the document refuses
RUNS = [(op.method, op.path, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (op.method, op.path, GenerationMode.NEGATIVE) for op in OPERATIONS if refusable(op)
]


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=lambda v: str(v))
def test_every_answer_is_one_the_document_gives(
    method: str,
    path: str,
    mode: GenerationMode,
    api_schema: schemathesis.BaseSchema,
    job_ids: tuple[str, ...],
    served: Served,
) -> None:
    operation = api_schema[path][method.upper()]

    @given(case=cases(operation, mode, job_ids))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: ApiCase) -> None:
        if path in STREAMS:
            case.validate_response(streamed_head(case, base_url(served)), checks=CHECKS)
        else:
            case.call_and_validate(base_url=base_url(served), checks=CHECKS)

    answers_as_documented()
