"""The access log: one INFO record per HTTP request, through the logger `aura.access`.

Fields: `method`, `path` (as sent, without its query: a query is the client's to fill and may
hold what it should not), `status`, `duration_ms` (from the request's head to the last byte
handed to the socket), `bytes` (the response's head and body as aiohttp wrote them), `remote`,
the request's `correlation_id` (its X-Correlation-Id) and, for a job's route, `job_id`. No
header is ever logged, so neither is a token or a key.

A request is logged by aiohttp once it is answered (`AccessLog`, given to each connection by
aura.http.protocol.listen), so a stream is logged when it ends. A request whose client went away
first (its handler is cancelled: a stream the client closed) is logged by
`access_log_middleware`, with the status it had answered or 499 (nginx's "client closed
request") if none. A request aiohttp's parser refused is logged with method and path `-`.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from aura.http.problems import correlation_id

__all__ = [
    "ACCESS_LOGGER",
    "CLIENT_CLOSED",
    "AccessLog",
    "access_log_middleware",
    "log_request",
    "mark_refused",
    "remember_status",
]

ACCESS_LOGGER = logging.getLogger("aura.access")
#: the status logged for a request whose client went away before any answer
CLIENT_CLOSED = 499
_STATUS = web.RequestKey("access_status", int)
_REFUSED = web.RequestKey("access_refused", bool)
_JOB_ID = web.RequestKey("access_job_id", str)


def log_request(request: web.BaseRequest, status: int, size: int, seconds: float) -> None:
    """One access record for `request`, answered `status` with `size` bytes in `seconds`."""
    refused = request.get(_REFUSED, False)
    method = "-" if refused else request.method
    path = "-" if refused else request.rel_url.raw_path
    remote = request.remote or "-"
    milliseconds = round(seconds * 1000, 3)
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": milliseconds,
        "bytes": size,
        "remote": remote,
        "correlation_id": correlation_id(request),
    }
    if job_id := request.get(_JOB_ID):
        fields["job_id"] = job_id
    ACCESS_LOGGER.info(
        "%s %s %d %d B %.1f ms from %s", method, path, status, size, milliseconds, remote,
        extra=fields,
    )  # fmt: skip


class AccessLog(AbstractAccessLogger):
    """aiohttp's hook, called once a request is answered (see the module's docstring)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log_request(request, response.status, response.body_length, time)

    @property
    def enabled(self) -> bool:  # aiohttp reads the clock for a request only if this is True
        return self.logger.isEnabledFor(logging.INFO)


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Notes the job a request is about (a route's `{id}`: only a routed request has one) and
    logs a request whose handler is cancelled (its client went away); aiohttp logs the others
    once answered. The outermost middleware."""
    started = asyncio.get_running_loop().time()
    if job_id := request.match_info.get("id"):
        request[_JOB_ID] = job_id
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if ACCESS_LOGGER.isEnabledFor(logging.INFO):
            seconds = asyncio.get_running_loop().time() - started
            status = request.get(_STATUS, CLIENT_CLOSED)
            log_request(request, status, request.writer.output_size, seconds)
        raise


async def remember_status(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the status a request answered, for its record if its client goes
    away before the end (a stream)."""
    request[_STATUS] = response.status


def mark_refused(request: web.BaseRequest) -> None:
    """`request` stands for one aiohttp's parser refused: its method and path are not known."""
    request[_REFUSED] = True
