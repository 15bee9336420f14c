"""One middleware maps every error to an RFC 9457 `application/problem+json` response.

Members: `type` (a link into `GET /api/errors`), `title` (the taxonomy's), `status`, `detail`
(the message), and the extensions `code` (the taxonomy code), `remediation` and
`correlationId`. An unexpected exception is logged with its correlation id and answered as
`Internal` without its text, so no internals (or secrets) reach a client.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from aura.engine.errors.mapping import map_exception
from aura.engine.errors.taxonomy import TAXONOMY, AuraError, base_code, make_error
from aura.http.wire import json_response
from aura.projections.events import ErrorInfo
from aura.store.errors import StoreFull

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "add_correlation_header",
    "correlation_id",
    "problem_middleware",
    "problem_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-Id"
#: what a 503 (ServerBusy) asks the client to wait before it tries again
RETRY_AFTER_SECONDS = 5
_CORRELATION = web.RequestKey("correlation_id", str)
_log = logging.getLogger("aura.http")

#: HTTP errors aiohttp raises itself (no route, wrong method, body too large) -> taxonomy code
_HTTP_CODES: dict[int, str] = {
    400: "InvalidInput:body",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
}


class Problem(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    type: str
    title: str
    status: int
    detail: str
    code: str
    remediation: str
    correlation_id: str


def correlation_id(request: web.Request) -> str:
    """This request's correlation id (an incoming X-Correlation-Id, or a new one)."""
    found = request.get(_CORRELATION)
    if found is None:
        found = _clean(request.headers.get(CORRELATION_HEADER)) or uuid.uuid4().hex
        request[_CORRELATION] = found
    return found


def _clean(value: str | None) -> str | None:
    if value and len(value) <= 64 and value.replace("-", "").isalnum():
        return value
    return None


def problem_response(info: ErrorInfo, status: int, correlation: str) -> web.Response:
    spec = TAXONOMY.get(base_code(info.code)) or TAXONOMY["Internal"]
    problem = Problem(
        type=f"/api/errors#{base_code(info.code)}",
        title=spec.title,
        status=status,
        detail=info.message,
        code=info.code,
        remediation=info.remediation,
        correlation_id=info.correlation_id or correlation,
    )
    headers = {CORRELATION_HEADER: problem.correlation_id}
    if status == 401:  # RFC 9110: a 401 names the scheme that would be accepted
        headers["WWW-Authenticate"] = 'Bearer realm="aura"'
    if status == 416 and "sizeBytes" in info.details:  # and a 416 the size of the file
        headers["Content-Range"] = f"bytes */{info.details['sizeBytes']}"
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return json_response(problem, status, headers, PROBLEM_CONTENT_TYPE)


def _from_http(error: web.HTTPException) -> ErrorInfo:
    code = _HTTP_CODES.get(error.status, "Internal")
    detail: Any = error.text if error.text and error.status != 500 else error.reason
    return make_error(code, str(detail).removeprefix(f"{error.status}: "))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as problem+json; successes and redirects pass through."""
    correlation = correlation_id(request)
    try:
        response = await handler(request)
    except AuraError as e:
        return problem_response(e.info, e.http_status, correlation)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        response = problem_response(_from_http(e), e.status, correlation)
        if "Allow" in e.headers:  # a 405 lists the methods the resource has
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except StoreFull as e:  # the log's disk is full: the taxonomy says what to do
        info = map_exception(e, step=None, correlation_id=correlation)
        return problem_response(info, TAXONOMY[base_code(info.code)].http_status, correlation)
    except Exception:
        _log.exception("unhandled error (correlation id %s) on %s", correlation, request.path)
        info = make_error("Internal", "the server failed unexpectedly; see its log")
        return problem_response(info, 500, correlation)
    return response


async def add_correlation_header(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every response, streams and files included, names its request."""
    response.headers.setdefault(CORRELATION_HEADER, correlation_id(request))
