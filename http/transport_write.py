"""The one raw write of the HTTP layer: body bytes straight to a response's transport.

A job stream's live frames are written from the event log's commit callback (see
http/fanout.py), where nothing can be awaited, so they cannot go through
`StreamResponse.write`. Everything that write relies on in aiohttp is stated, and checked by
tests/e2e/test_transport_write.py, here.
"""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web

__all__ = ["DIRECT_WRITE_LIMIT", "TransportWriter"]

#: bytes a client's socket may hold unsent before a write here is refused (the caller then
#: awaits StreamResponse.write, which waits for the socket to drain, as aiohttp's writer does
#: every 64 KiB)
DIRECT_WRITE_LIMIT = 64 * 1024


class TransportWriter:
    """Writes a prepared response's body bytes to its connection's transport, synchronously.

    What it relies on in aiohttp (read in 3.14's web_response.py and http_writer.py; the test
    named above fails if an upgrade changes it):

    - `request.transport` is the transport the response's payload writer (`StreamWriter`)
      writes to, both being the request protocol's, and `StreamResponse.write` hands each body
      chunk to `transport.write` before it returns, buffering nothing of the body: bytes written
      here and through the response reach the client in the order of the calls;
    - the status line and headers are out once the response is prepared and has written once
      (the stream's first message, which carries the retry hint, goes through the response);
    - the body is framed only by chunked transfer encoding, which the response announces in
      its `Transfer-Encoding: chunked` header once prepared (HTTP/1.1 without Content-Length):
      then every write is one chunk, `<size in hex>\\r\\n<bytes>\\r\\n`, and a write here frames
      itself the same way, so `write_eof`'s last chunk still ends a valid body; without that
      header (HTTP/1.0) the body goes unframed and so do the bytes here;
    - compression would deflate the body: a compressed response gets no writer.

    Bytes written here bypass the payload writer's flow control and byte counts, so a write is
    refused when the socket is closing or already holds DIRECT_WRITE_LIMIT unsent bytes.
    """

    __slots__ = ("_chunked", "_transport")

    def __init__(self, transport: asyncio.Transport | None, chunked: bool) -> None:
        self._transport = transport
        self._chunked = chunked

    @classmethod
    def for_response(cls, request: web.Request, resp: web.StreamResponse) -> TransportWriter | None:
        """A writer of `resp`'s body, once `resp` is prepared for `request` and has written
        once; None for a compressed body."""
        if resp.compression:
            return None
        return cls(request.transport, resp.headers.get(hdrs.TRANSFER_ENCODING) == "chunked")

    def write(self, data: bytes) -> bool:
        """Write `data` (not empty) in one call; False, writing nothing, when the socket is
        closing or holds more than DIRECT_WRITE_LIMIT unsent bytes."""
        transport = self._transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        return True
