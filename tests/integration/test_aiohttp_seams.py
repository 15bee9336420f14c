"""What http/protocol.py relies on in aiohttp beyond its documented API, checked on the real
aiohttp with a server on 127.0.0.1: an aiohttp release that changes one of these fails here,
naming the seam, before the server's connections misbehave."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from aura.http.protocol import AuraRequestHandler

TIMEOUT = 10.0
HOST = b"Host: 127.0.0.1\r\n"


class Recording(AuraRequestHandler):
    """An AuraRequestHandler that records what aiohttp hands it."""

    def __init__(self, *args: Any, record: list[tuple[Any, ...]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record = record

    def data_received(self, data: bytes) -> None:
        queued = len(self._messages)
        super().data_received(data)
        new = list(itertools.islice(self._messages, queued, None))  # still there: not popped yet
        self.record.append(("queued", new))

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        self.record.append(("handle_error", status, exc))
        return super().handle_error(request, status, exc, message)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        self.record.append(("finish_response",))
        return await super().finish_response(request, resp, start_time)


async def body_size(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


@pytest.fixture
async def runner() -> AsyncIterator[web.AppRunner]:
    app = web.Application()
    app.router.add_route("*", "/", body_size)
    runner = web.AppRunner(app)
    await runner.setup()
    yield runner
    await runner.cleanup()


Factory = Callable[[], asyncio.BaseProtocol]


async def serve(factory: Factory) -> tuple[asyncio.Server, int]:
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def recording_server(
    runner: web.AppRunner, record: list[tuple[Any, ...]]
) -> tuple[asyncio.Server, int]:
    """Connections made as `listen` makes them: the handler class with `runner.server`."""
    manager = runner.server
    assert isinstance(manager, web.Server)
    loop = asyncio.get_running_loop()
    return await serve(lambda: Recording(manager, loop=loop, head_timeout=TIMEOUT, record=record))


async def answer_of(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)


def queued(record: list[tuple[Any, ...]]) -> list[tuple[Any, Any]]:
    return [entry for event in record if event[0] == "queued" for entry in event[1]]


async def test_each_head_is_queued_with_its_body_reader_before_data_received_returns(
    runner: web.AppRunner,
) -> None:
    record: list[tuple[Any, ...]] = []
    server, port = await recording_server(runner, record)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\n")
        await asyncio.sleep(0.1)
        [(message, body)] = queued(record)  # one entry per head, once the head is complete
        assert isinstance(message, RawRequestMessage) and isinstance(body, StreamReader)
        assert not body.is_eof()  # the body is still to come...
        writer.write(b"12345" + b"GET / HTTP/1.1\r\n" + HOST + b"\r\n")
        assert b"200 OK" in await answer_of(reader)
        assert await asyncio.wait_for(reader.readexactly(1), TIMEOUT) == b"5"
        assert body.is_eof()  # ...and its end is marked when it is in
        assert b"200 OK" in await answer_of(reader)
        assert len(queued(record)) == 2
        assert record.count(("finish_response",)) == 2  # once per request answered
    finally:
        writer.close()
        server.close()


async def test_a_parse_error_is_queued_with_its_error_and_answered_by_handle_error(
    runner: web.AppRunner,
) -> None:
    record: list[tuple[Any, ...]] = []
    server, port = await recording_server(runner, record)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"G@T / HTTP/1.1\r\n" + HOST + b"\r\n")
        assert b" 400 " in await answer_of(reader)
        [(message, _)] = queued(record)
        assert not isinstance(message, RawRequestMessage)
        assert isinstance(message.exc, HttpProcessingError)
        assert ("handle_error", 400, message.exc) in record
        assert record.count(("finish_response",)) == 1
    finally:
        writer.close()
        server.close()


async def test_aiohttp_alone_leaves_a_handler_reading_a_body_waiting_after_a_bad_chunk(
    runner: web.AppRunner,
) -> None:
    """Why AuraRequestHandler hands the parser's error to the body: without it the handler
    waits for ever. If this fails, aiohttp ends the body itself and `_fail_body` may go."""
    manager = runner.server
    assert manager is not None
    loop = asyncio.get_running_loop()
    server, port = await serve(lambda: web.RequestHandler(manager, loop=loop))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.1)
        writer.write(b"zz\r\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 1.0)
    finally:
        writer.close()
        server.close()
    # and ours answers it
    server, port = await recording_server(runner, [])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.1)
        writer.write(b"zz\r\n")
        # the read raises the parser's error; with no problem middleware in this bare app it
        # reaches handle_error, which answers it as the parser's
        assert b" 400 " in await answer_of(reader)
    finally:
        writer.close()
        server.close()
