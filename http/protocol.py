"""The server's connections: aiohttp's `RequestHandler`, answering the requests its parser
refuses as problem+json, and bounding the time a client takes to send a request's head.

aiohttp answers a request whose head it cannot parse (a header over 8,190 bytes, a NUL in a
header, a bad method, `Content-Length` with `Transfer-Encoding`...) itself, before any route or
middleware sees it, as `text/plain` quoting the request's bytes (a token included), and logs a
traceback for each. `AuraRequestHandler.handle_error` answers `BadRequest` (400) or
`HeadersTooLarge` (431) instead, quoting no header, and logs one line. A fault in a body (a bad
chunk size) arriving while its handler reads it left that handler waiting for ever: the body's
reader now gets the parser's error, which the problem middleware answers as `BadRequest`; and a
body that failed (not the gzip it claims) is ended once answered, where aiohttp read it again
and logged its error with a traceback.

aiohttp has no limit on the time a client takes to send a request line and headers: a client
sending one byte a second holds its connection as long as it likes. Here a connection must send
a complete head within `head_timeout` seconds of being made, or of the first byte of a further
request on a kept-alive connection (an idle one, between requests, is aiohttp's keep-alive's to
close). A client that sent part of a head gets 408 `RequestTimeout`; one that sent nothing is
closed without an answer (a browser's unused preconnection is not an error).

What this relies on in aiohttp (tests/integration/test_aiohttp_seams.py fails on an aiohttp
that changes one of them):
- `web.RequestHandler(manager, loop=..., **kwargs)` is how `web.Server` makes the protocol of a
  connection, and after `AppRunner.setup()` `runner.server` is that manager (public names;
  `listen` makes the handlers, since a `web.TCPSite` would make aiohttp's own);
- `handle_error(request, status, exc, message)` makes the answer to a request the parser
  refused, with the parser's `HttpProcessingError` as `exc`;
- `finish_response(request, ...)` is awaited once for every request answered;
- `_messages` (private): the deque of (message, payload) that `data_received` appends to, one
  entry per head parsed (a `RawRequestMessage` and its body's reader) or per parser error (an
  entry with the error as `.exc`), and that only the handler's task pops, after
  `data_received` returns.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from aura.engine.errors.taxonomy import make_error
from aura.http.access_log import ACCESS_LOGGER, AccessLog, mark_refused
from aura.http.problems import (
    correlation_id,
    log_refusal,
    malformed_request,
    problem_message,
    problem_response,
)

__all__ = ["DEFAULT_BACKLOG", "DEFAULT_HEAD_TIMEOUT", "AuraRequestHandler", "listen"]

#: seconds a client has to send a request line and headers
DEFAULT_HEAD_TIMEOUT = 10.0
#: connections the kernel queues for the server to accept (Linux caps it at net.core.somaxconn,
#: 4096 by default since Linux 5.4): aiohttp's 128 overflows when thousands connect at once
DEFAULT_BACKLOG = 4096
_log = logging.getLogger("aura.http")


class AuraRequestHandler(web.RequestHandler):
    """One connection: aiohttp's handler, with problem+json answers to requests it cannot parse
    and a time limit on each request's head (see the module's docstring)."""

    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        #: bytes of the awaited head have come (a timeout then answers 408)
        self._head_begun = False
        #: heads parsed (and parser errors), and requests answered: equal between requests
        self._parsed = 0
        self._answered = 0
        #: the body of the last request parsed: until it is all in, bytes are its, not a head's
        self._body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # a new connection has head_timeout to send its first head

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._awaiting_head():
            self._head_begun = True
            if self._head_timer is None:  # a kept-alive connection begins its next request
                self._arm()
        queued = len(self._messages)
        super().data_received(data)
        for message, payload in itertools.islice(self._messages, queued, None):
            self._parsed += 1
            if isinstance(message, RawRequestMessage):
                self._body = payload
            else:  # the parser's error: a body it was filling will never end
                self._fail_body(getattr(message, "exc", None))
        if not self._awaiting_head():  # a head was parsed: its request is the handler's now
            self._head_done()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        self._answered += 1
        body = request.content
        if body.exception() is not None and not body.is_eof():  # e.g. a body not gzip at all
            body.feed_eof()  # it is over: aiohttp would read it again after the answer, and log
        return await super().finish_response(request, resp, start_time)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        correlation = correlation_id(request)  # the access log names it too
        if isinstance(exc, HttpProcessingError):  # the parser refused the request: no traceback
            info, status = malformed_request(exc, self.max_headers)
            log_refusal(request.remote, status, info, correlation)
            mark_refused(request)
        else:  # an error past the app's middleware: a bug, worth its traceback
            _log.error(
                "unhandled error (correlation id %s)", correlation, exc_info=exc,
                extra={"correlation_id": correlation},
            )  # fmt: skip
            info, status = make_error("Internal", "the server failed unexpectedly"), 500
        if request.writer.output_size > 0:  # part of an answer is out: no other can follow
            raise ConnectionError("a response is under way: the error cannot be answered")
        response = problem_response(info, status, correlation)
        response.force_close()
        return response

    def _fail_body(self, error: object) -> None:
        """Hand the parser's error to the body it stopped filling: its handler, reading it, is
        answered `BadRequest` by the problem middleware instead of waiting for ever."""
        body = self._body
        if body is not None and not body.is_eof() and isinstance(error, HttpProcessingError):
            body.set_exception(error)
            body.feed_eof()  # nothing more comes: not read (and logged) again after the answer

    def _awaiting_head(self) -> bool:
        """Every request begun is answered and its body is in: the next byte starts a head."""
        body = self._body
        return self._parsed == self._answered and (body is None or body.is_eof())

    def _arm(self) -> None:
        if self.head_timeout > 0:
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self.head_timeout, self._head_timed_out)

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_begun = False

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or not self._awaiting_head():
            return
        peer = (transport.get_extra_info("peername") or ("?",))[0]
        if self._head_begun:
            correlation = uuid.uuid4().hex
            seconds = f"{self.head_timeout:g} s"
            info = make_error("RequestTimeout", f"the request's head did not arrive in {seconds}")
            log_refusal(peer, 408, info, correlation)
            transport.write(problem_message(info, 408, correlation))
        else:
            _log.debug("closed a connection from %s that sent nothing", peer)
        self.force_close()


async def listen(
    runner: web.AppRunner,
    host: str,
    port: int,
    *,
    backlog: int = DEFAULT_BACKLOG,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    **handler_args: Any,
) -> asyncio.Server:
    """Serve `runner`'s app on host:port, each connection an `AuraRequestHandler` made with
    `handler_args` (e.g. `keepalive_timeout`) that log their requests to Aura's access log
    (aura.http.access_log). Close the server before `runner.cleanup()`."""
    manager = runner.server
    if manager is None:
        raise RuntimeError("call runner.setup() before listen()")
    handler_args = {"access_log_class": AccessLog, "access_log": ACCESS_LOGGER} | handler_args
    loop = asyncio.get_running_loop()

    def connection() -> AuraRequestHandler:
        return AuraRequestHandler(manager, loop=loop, head_timeout=head_timeout, **handler_args)

    return await loop.create_server(connection, host, port, backlog=backlog)
