"""One middleware maps every error to an RFC 9457 `application/problem+json` response.

Members: `type` (a link into `GET /api/errors`), `title` (the taxonomy's), `status`, `detail`
(the message), and the extensions `code` (the taxonomy code), `remediation` and
`correlationId`. An unexpected exception is logged with its correlation id and answered as
`Internal` without its text, so no internals (or secrets) reach a client. A request aiohttp's
parser refuses is `BadRequest` (400) or `HeadersTooLarge` (431), logged in one line: here when
its body is at fault, in aura.http.protocol when its head is (no route ever sees it).
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.typedefs import Handler

from aura.engine.config.logs import bind_correlation
from aura.engine.errors.mapping import map_exception
from aura.engine.errors.taxonomy import TAXONOMY, AuraError, base_code, make_error
from aura.http.wire import ENCODER, json_response
from aura.projections.events import ErrorInfo
from aura.store.errors import StoreFull, StoreUnavailable

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "add_correlation_header",
    "correlation_id",
    "log_refusal",
    "malformed_request",
    "problem_message",
    "problem_middleware",
    "problem_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-Id"
#: what a 503 (ServerBusy) asks the client to wait before it tries again
RETRY_AFTER_SECONDS = 5
_CORRELATION = web.RequestKey("correlation_id", str)
_log = logging.getLogger("aura.http")
#: what aiohttp's parsers say of more headers than `max_headers` (a plain BadHttpMessage)
TOO_MANY_HEADERS = "Too many headers received"
#: where a parser's message starts quoting the request's bytes: b'...' or bytearray(b'...')
_QUOTED_BYTES = re.compile(r"\s*(bytearray\()?b['\"].*", re.DOTALL)

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


def correlation_id(request: web.BaseRequest) -> str:
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
    problem, headers = _problem(info, status, correlation)
    return json_response(problem, status, headers, PROBLEM_CONTENT_TYPE)


def problem_message(info: ErrorInfo, status: int, correlation: str) -> bytes:
    """A whole HTTP/1.1 response with the problem, that closes the connection: for an answer
    written straight to a transport, where no request (and so no aiohttp response) exists."""
    problem, headers = _problem(info, status, correlation)
    body = ENCODER.encode(problem)
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {PROBLEM_CONTENT_TYPE}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return "\r\n".join([*lines, "", ""]).encode("ascii") + body


def _problem(info: ErrorInfo, status: int, correlation: str) -> tuple[Problem, dict[str, str]]:
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
    return problem, headers


def malformed_request(exc: HttpProcessingError, max_headers: int = 128) -> tuple[ErrorInfo, int]:
    """The problem, and its status, for a request aiohttp's parser refused: 431
    `HeadersTooLarge` for a line or headers over its limits, else 400 `BadRequest`. The detail
    never quotes the bytes the parser quotes (a header, which may hold a token)."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 8190
        detail = f"the request line or a header is longer than {limit:,} bytes"
        return make_error("HeadersTooLarge", detail), 431
    if exc.message == TOO_MANY_HEADERS:
        detail = f"the request has more than {max_headers} headers"
        return make_error("HeadersTooLarge", detail), 431
    return make_error("BadRequest", f"the request is not valid HTTP/1.1: {_fault(exc)}"), 400


def _fault(exc: HttpProcessingError) -> str:
    """The parser's description of the fault, without the bytes it quotes: llhttp's messages put
    them after a blank line ("Invalid header value char:\\n\\n  b'X: a\\x00'..."), aiohttp's
    own inline ("Invalid HTTP header: b'...'")."""
    first = str(exc.message).split("\n\n", 1)[0]
    parts = [line.strip().rstrip(":").strip() for line in first.splitlines()]
    text = _QUOTED_BYTES.sub("", ": ".join(p for p in parts if p)).rstrip(": .")
    return text[:200] or type(exc).__name__


def log_refusal(peer: object, status: int, info: ErrorInfo, correlation: str) -> None:
    """One line for a request refused as malformed (or too slow); no traceback."""
    line = f"{status} {info.code} from {peer}: {info.message} (correlation id {correlation})"
    _log.warning("%s", line, extra={"correlation_id": correlation})


def _unreadable_body(error: Exception, peer: object, correlation: str) -> web.Response:
    """A body the parser refused (a bad chunk size) or could not decode: 400, and the
    connection closes (what follows the fault cannot be parsed)."""
    if isinstance(error, HttpProcessingError):
        info, status = malformed_request(error)
    else:
        info = make_error("BadRequest", "the request's body could not be decoded")
        status = 400
    log_refusal(peer, status, info, correlation)
    response = problem_response(info, status, correlation)
    response.force_close()
    return response


def _from_http(error: web.HTTPException) -> ErrorInfo:
    code = _HTTP_CODES.get(error.status, "Internal")
    detail: Any = error.text if error.text and error.status != 500 else error.reason
    return make_error(code, str(detail).removeprefix(f"{error.status}: "))


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as problem+json; successes and redirects pass through. What is
    logged while the request is handled names its correlation id."""
    correlation = correlation_id(request)
    bind_correlation(correlation)
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
    except (HttpProcessingError, web.RequestPayloadError) as e:
        return _unreadable_body(e, request.remote, correlation)
    except (StoreFull, StoreUnavailable) as e:  # the taxonomy says what to do
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
