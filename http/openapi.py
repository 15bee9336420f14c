"""The OpenAPI 3.1 document served at `GET /api/openapi.json`.

Schemas come from the msgspec structs the handlers encode and decode, so they cannot drift from
the code; a test compares the paths and methods here with the app's routes.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import msgspec

from aura.engine.config.inputs import JobRequest
from aura.engine.config.saved_settings import SettingsUpdate, SettingsView
from aura.engine.tools.preflight import Finding
from aura.http.openapi_rules import AT_PARAM, LIST_PARAMS, SEQ_PATTERN, SESSION_BODY, tighten
from aura.http.problems import PROBLEM_CONTENT_TYPE, Problem
from aura.http.security import COOKIE_NAME, OPEN_PATHS
from aura.http.wire import JobChanged, JobList, JobView

__all__ = ["METRICS_MEDIA_TYPE", "OPERATIONS", "Operation", "openapi_document"]

_REF = "#/components/schemas/{name}"
#: what GET /metrics answers (it adds `charset=utf-8`)
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4"
_JOB = {"$ref": _REF.format(name="JobView")}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


class Operation(NamedTuple):
    method: str
    path: str
    operation_id: str
    summary: str
    #: status -> (description, media type or None, schema or None)
    responses: dict[str, tuple[str, str | None, dict[str, Any] | None]]
    parameters: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None


def _json(description: str, schema: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    return (description, "application/json", schema)


_OBJECT: dict[str, Any] = {"type": "object"}
_SSE_PARAMS = (
    _ID,
    {
        "name": "Last-Event-ID",
        "in": "header",
        "schema": {"type": "string", "pattern": SEQ_PATTERN},
        "description": "resume after this seq (sent by EventSource on reconnect); a seq "
        "past the log's newest event is 400 InvalidInput:Last-Event-ID (for a job: while it "
        "runs; one that ended answers 204)",
    },
    {
        "name": "lastEventId",
        "in": "query",
        "schema": {"type": "string", "pattern": SEQ_PATTERN},
        "description": "resume after this seq (for clients that cannot set headers); "
        "ignored when the Last-Event-ID header is given (a browser reconnecting to the URL it "
        "opened sends the newer seq there)",
    },
)
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"$ref": _REF.format(name="IdempotencyKey")},
    "description": "the same key with the same body answers the job the first request created",
}
#: GET /api/health; other members may be added
_HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["status", "lastSeq", "jobList", "problems"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "lastSeq": {"type": "integer", "minimum": 0},
        "jobList": {
            "type": "object",
            "description": "whether GET /api/jobs is being rebuilt from the log (its rows are "
            "then those of the events up to appliedSeq; the list says `rebuilding` too)",
            "required": ["rebuilding", "appliedSeq", "progress"],
            "properties": {
                "rebuilding": {"type": "boolean"},
                "appliedSeq": {"type": "integer", "minimum": 0},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "problems": {
            "type": "array",
            "description": "why the server is degraded (503): LogUnwritable while the log "
            "refuses writes, DatabaseUnavailable while the log's database does not answer, "
            "Internal when the job list could not be rebuilt; empty when ok",
            "items": {"$ref": _REF.format(name="ErrorInfo")},
        },
    },
}
_ACTION_BODY = {"required": False, "content": {"application/json": {"schema": _OBJECT}}}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/api/jobs",
        "createJob",
        "Create a job (Idempotency-Key header honoured)",
        {
            "201": _json("created", _JOB),
            "200": _json("the job an earlier request with this Idempotency-Key created", _JOB),
        },
        (_IDEMPOTENCY_KEY,),
        {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": _REF.format(name="JobRequest")}}},
        },
    ),
    Operation(
        "get",
        "/api/jobs",
        "listJobs",
        "List jobs, newest first, from the read model",
        {"200": _json("a page of jobs", {"$ref": _REF.format(name="JobList")})},
        LIST_PARAMS,
    ),
    Operation(
        "get",
        "/api/jobs/{id}",
        "getJob",
        "A job's state, now or as of a past event (?at=SEQ)",
        {"200": _json("the job", _JOB)},
        (_ID, AT_PARAM),
    ),
    Operation(
        "get",
        "/api/jobs/{id}/events",
        "followJob",
        "Server-sent events of the job, resumable by Last-Event-ID",
        {
            "200": ("text/event-stream of step-*/job-* events", "text/event-stream", None),
            "204": ("the job ended at or before Last-Event-ID: stop reconnecting", None, None),
            "503": (
                "ServerBusy: as many streams open as the server allows, or DatabaseUnavailable: "
                "the log's database does not answer (Retry-After)",
                PROBLEM_CONTENT_TYPE,
                {"$ref": _REF.format(name="Problem")},
            ),
        },
        _SSE_PARAMS,
    ),
    Operation(
        "get",
        "/api/events",
        "followJobList",
        "Server-sent events of the job list: `job-changed`, data a JobChanged (the job's row "
        "right after event `seq`), one per event that changes a row; live from now, or resumed "
        "after Last-Event-ID (e.g. the list's lastSeq)",
        {
            "200": ("text/event-stream of job-changed events", "text/event-stream", None),
            "503": (
                "ServerBusy: as many streams open as the server allows, or DatabaseUnavailable: "
                "the log's database does not answer (Retry-After)",
                PROBLEM_CONTENT_TYPE,
                {"$ref": _REF.format(name="Problem")},
            ),
        },
        _SSE_PARAMS[1:],
    ),
    Operation(
        "post",
        "/api/jobs/{id}/cancel",
        "cancelJob",
        "Cancel a queued or running job",
        {"202": _json("the job after the cancel", _JOB)},
        (_ID,),
        _ACTION_BODY,
    ),
    Operation(
        "post",
        "/api/jobs/{id}/retry",
        "retryJob",
        "Retry a failed or canceled job from its failed step",
        {"202": _json("the job, queued for its next attempt", _JOB)},
        (_ID,),
        _ACTION_BODY,
    ),
    Operation(
        "post",
        "/api/jobs/{id}/rerun",
        "rerunJob",
        "A new job with the same inputs",
        {"202": _json("the new job", _JOB)},
        (_ID,),
        _ACTION_BODY,
    ),
    Operation(
        "get",
        "/api/jobs/{id}/log",
        "jobLog",
        "The job's raw events as NDJSON (seq, version, type, step, attempt, ts, data)",
        {"200": ("one event per line", "application/x-ndjson", None)},
        (_ID,),
    ),
    Operation(
        "get",
        "/api/jobs/{id}/diagnostics",
        "jobDiagnostics",
        "Events, state and system facts, redacted",
        {"200": _json("the diagnostics bundle", _OBJECT)},
        (_ID,),
    ),
    Operation(
        "get",
        "/api/jobs/{id}/output",
        "jobOutput",
        "The finished video (range requests supported)",
        {
            "200": ("the video", "video/mp4", {"type": "string", "format": "binary"}),
            "206": ("part of the video", "video/mp4", {"type": "string", "format": "binary"}),
            "304": ("If-None-Match or If-Modified-Since: the client's copy is current", None, None),
            "412": (
                "PreconditionFailed: If-Match or If-Unmodified-Since names another video",
                PROBLEM_CONTENT_TYPE,
                {"$ref": _REF.format(name="Problem")},
            ),
            "416": (
                "RangeNotSatisfiable: a range of no byte of the video (Content-Range: bytes "
                "*/SIZE)",
                PROBLEM_CONTENT_TYPE,
                {"$ref": _REF.format(name="Problem")},
            ),
        },
        (
            _ID,
            {
                "name": "Range",
                "in": "header",
                "schema": {"type": "string", "examples": ["bytes=0-1023", "bytes=-1024"]},
                "description": "one byte range; another unit or several ranges get the whole video",
            },
            {
                "name": "If-Range",
                "in": "header",
                "schema": {"type": "string"},
                "description": "the ETag (or date) of the copy the client has: Range applies only "
                "to that same file (a value that is neither gets the whole video)",
            },
            *(
                {"name": name, "in": "header", "schema": {"type": "string"}, "description": text}
                for name, text in (
                    ("If-Match", "ETags, or *: answer only if the video has one of them, else 412"),
                    ("If-Unmodified-Since", "answer only if the video is not newer, else 412"),
                    ("If-None-Match", "ETags, or *: 304 if the video has one of them"),
                    ("If-Modified-Since", "304 if the video is not newer"),
                )
            ),
        ),
    ),
    Operation(
        "get",
        "/api/system-check",
        "systemCheck",
        "tools, output folder, log, disk, GPU, keys: each failing check with its error code",
        {
            "200": _json(
                "the findings",
                {
                    "type": "object",
                    "properties": {
                        "ok": {"type": "boolean"},
                        "findings": {
                            "type": "array",
                            "items": {"$ref": _REF.format(name="Finding")},
                        },
                    },
                },
            )
        },
    ),
    Operation(
        "get",
        "/api/settings",
        "getSettings",
        "The provider settings in effect and where each comes from (the key is never shown)",
        {"200": _json("the settings", {"$ref": _REF.format(name="SettingsView")})},
    ),
    Operation(
        "put",
        "/api/settings",
        "saveSettings",
        "Save provider settings (left out: unchanged; null: removed); used by runs started after",
        {"200": _json("the settings now", {"$ref": _REF.format(name="SettingsView")})},
        (),
        {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(name="SettingsUpdate")}}
            },
        },
    ),
    Operation(
        "get", "/api/errors", "errorTaxonomy", "The error codes", {"200": _json("codes", _OBJECT)}
    ),
    Operation(
        "get",
        "/api/health",
        "health",
        "Liveness (no token needed)",
        {"200": _json("ok", _HEALTH), "503": _json("degraded: see problems", _HEALTH)},
    ),
    Operation(
        "get",
        "/api/openapi.json",
        "openapi",
        "This document",
        {"200": _json("OpenAPI 3.1", _OBJECT)},
    ),
    Operation(
        "post",
        "/api/session",
        "openSession",
        "Exchange the token for an HttpOnly cookie (for EventSource)",
        {"204": ("cookie set", None, None)},
        (),
        {
            "required": True,
            "content": {"application/json": {"schema": SESSION_BODY}},
        },
    ),
    Operation(
        "delete",
        "/api/session",
        "closeSession",
        "Clear the cookie",
        {"204": ("cleared", None, None)},
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Metrics in the Prometheus text format: jobs by status, step durations, append latency, "
        "group-commit sizes, SSE streams open and messages delivered, queue depth",
        {"200": ("the metrics", METRICS_MEDIA_TYPE, {"type": "string"})},
    ),
)


#: headers particular answers carry, besides X-Correlation-Id (every answer):
#: (method, path, status) -> {header: what it says}
_HEADERS: dict[tuple[str, str, str], dict[str, str]] = {
    ("post", "/api/jobs", "201"): {"Location": "the job's URL"},
    ("post", "/api/jobs", "200"): {
        "Location": "the job's URL",
        "Idempotent-Replayed": "true: the job this Idempotency-Key created before",
    },
    ("post", "/api/jobs/{id}/rerun", "202"): {"Location": "the new job's URL"},
    ("get", "/api/jobs/{id}/events", "503"): {"Retry-After": "seconds to wait before reopening"},
    ("get", "/api/events", "503"): {"Retry-After": "seconds to wait before reopening"},
    ("get", "/api/jobs/{id}/output", "206"): {"Content-Range": "bytes FIRST-LAST/SIZE"},
    ("get", "/api/jobs/{id}/output", "416"): {"Content-Range": "bytes */SIZE"},
}
_CORRELATION = {"X-Correlation-Id": "the request's correlation id (its own, if it sent one)"}


def _headers(described: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "schema": {"type": "string"}}
        for name, text in {**described, **_CORRELATION}.items()
    }


def _responses(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (description, media, schema) in op.responses.items():
        response: dict[str, Any] = {"description": description}
        if media is not None:
            response["content"] = {media: {"schema": schema} if schema else {}}
        response["headers"] = _headers(_HEADERS.get((op.method, op.path, status), {}))
        out[status] = response
    out["default"] = {
        "description": "an error (RFC 9457 problem details; a 401 names its scheme in "
        "WWW-Authenticate, a 503 the seconds to wait in Retry-After)",
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(name="Problem")}}},
        "headers": _headers({}),
    }
    return out


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [JobView, JobList, JobChanged, JobRequest, Problem, Finding, SettingsView, SettingsUpdate],
        ref_template=_REF,
    )
    tighten(components)  # what the server checks beyond the structs
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "responses": _responses(op),
        }
        if op.parameters:
            operation["parameters"] = list(op.parameters)
        if op.body is not None:
            operation["requestBody"] = op.body
        if (op.method.upper(), op.path) in OPEN_PATHS:
            operation["security"] = []
        paths.setdefault(op.path, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Aura jobs API",
            "version": "1",
            "description": "A server started with AURA_TOKEN (any non-loopback address) needs "
            "the token on every operation but GET /api/health and POST /api/session: as a "
            "bearer header, or as "
            "the cookie POST /api/session sets. One bound to loopback without it needs none.",
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
            },
        },
        # either credential, or none (the `{}`) on a server bound to loopback without a token
        "security": [{"bearer": []}, {"cookie": []}, {}],
        "paths": paths,
    }
