"""What http/transport_write.py relies on in aiohttp, checked on a real server on 127.0.0.1.

A live SSE frame is written straight to the response's transport. If an aiohttp upgrade buffers
the body, frames it differently or writes to another transport, these fail before a client
sees a garbled stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from aura.http.transport_write import DIRECT_WRITE_LIMIT, TransportWriter

PARTS = (b"one;", b"two;", b"three;", b"four;", b"five")


async def _mixed_writes(request: web.Request) -> web.StreamResponse:
    """Odd parts through StreamResponse, even ones straight to the transport, alternating."""
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    await resp.write(PARTS[0])  # as a stream's retry hint goes before any raw write
    writer = TransportWriter.for_response(request, resp)
    assert writer is not None
    assert writer.write(PARTS[1])
    await resp.write(PARTS[2])
    assert writer.write(PARTS[3])
    await resp.write_eof(PARTS[4])
    return resp


async def _server(aiohttp_server: Any) -> Any:
    app = web.Application()
    app.router.add_get("/", _mixed_writes)
    return await aiohttp_server(app)


async def _raw_exchange(host: str, port: int, request: bytes) -> tuple[bytes, bytes]:
    """The response's head and body, as they came over the socket."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read()  # to EOF: the server closes (Connection: close, HTTP/1.0)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _dechunk(body: bytes) -> list[bytes]:
    """The chunks of a chunked body, strictly: sizes in hex, each chunk ended by CRLF, then 0."""
    chunks: list[bytes] = []
    while True:
        size_line, sep, body = body.partition(b"\r\n")
        assert sep, "a chunk size line without CRLF"
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", "the body must end right after the last chunk"
            return chunks
        chunk, body = body[:size], body[size:]
        assert len(chunk) == size and body.startswith(b"\r\n"), "a chunk not ended by CRLF"
        chunks.append(chunk)
        body = body[2:]


async def test_http11_raw_writes_are_chunks_in_order_with_the_responses(
    aiohttp_server: Any,
) -> None:
    server = await _server(aiohttp_server)
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    head, body = await _raw_exchange(server.host, server.port, request)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\ntransfer-encoding: chunked" in head.lower()  # what for_response reads
    # every write is one chunk of its own, the raw ones framed as aiohttp frames its own
    assert _dechunk(body) == list(PARTS)


async def test_http10_raw_writes_go_unframed_in_order_with_the_responses(
    aiohttp_server: Any,
) -> None:
    server = await _server(aiohttp_server)
    head, body = await _raw_exchange(server.host, server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"".join(PARTS)


async def test_aiohttps_own_client_reads_one_body_in_order(aiohttp_server: Any) -> None:
    server = await _server(aiohttp_server)
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
        assert await resp.read() == b"".join(PARTS)


async def test_a_compressed_response_gets_no_writer(aiohttp_server: Any) -> None:
    found: list[TransportWriter | None] = []

    async def compressed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_compression()
        await resp.prepare(request)
        found.append(TransportWriter.for_response(request, resp))
        await resp.write_eof(b"x")
        return resp

    app = web.Application()
    app.router.add_get("/", compressed)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/")) as resp:
        assert await resp.read() == b"x"
    assert found == [None]


class _Transport(asyncio.Transport):
    def __init__(self, closing: bool, buffered: int) -> None:
        super().__init__()
        self.closing, self.buffered, self.written = closing, buffered, b""

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)


def test_a_write_is_refused_whole_when_the_socket_is_closing_or_full() -> None:
    for closing, buffered in ((True, 0), (False, DIRECT_WRITE_LIMIT + 1)):
        transport = _Transport(closing, buffered)
        assert not TransportWriter(transport, chunked=True).write(b"frame")
        assert transport.written == b""
    assert not TransportWriter(None, chunked=False).write(b"frame")  # the connection is gone
    transport = _Transport(False, DIRECT_WRITE_LIMIT)
    assert TransportWriter(transport, chunked=True).write(b"frame")
    assert transport.written == b"5\r\nframe\r\n"
