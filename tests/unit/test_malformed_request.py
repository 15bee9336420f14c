"""The problem for a request aiohttp's parser refuses names the fault and never quotes the
header it found it in, whichever parser (llhttp's, or aiohttp's pure-Python one) raised it."""

from __future__ import annotations

from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    InvalidHeader,
    LineTooLong,
    TransferEncodingError,
)

from aura.engine.errors.taxonomy import TAXONOMY
from aura.http.problems import malformed_request

SECRET = b"Authorization: Bearer sk-SECRET0123456789"


def test_a_line_or_headers_over_the_limits_are_431_naming_the_limit() -> None:
    info, status = malformed_request(LineTooLong(SECRET[:100] + b"...", 8190))
    assert (status, info.code) == (431, "HeadersTooLarge")
    assert info.message == "the request line or a header is longer than 8,190 bytes"
    assert info.remediation == TAXONOMY["HeadersTooLarge"].remediation
    info, status = malformed_request(BadHttpMessage("Too many headers received"), 100)
    assert (status, info.code, info.message) == (
        431,
        "HeadersTooLarge",
        "the request has more than 100 headers",
    )


def test_llhttps_messages_lose_the_bytes_they_quote_after_a_blank_line() -> None:
    quoted = repr(SECRET + b"\x01")
    message = f"Invalid header value char:\n\n  {quoted}\n                ^"
    info, status = malformed_request(BadHttpMessage(message))
    assert (status, info.code) == (400, "BadRequest")
    assert info.message == "the request is not valid HTTP/1.1: Invalid header value char"
    nested = "Bad status line:\n  Invalid HTTP version:\n\n  b'GET / HTTP/9.9'\n     ^"
    info, _ = malformed_request(BadHttpMessage(nested))
    assert info.message.endswith(": Bad status line: Invalid HTTP version")


def test_the_python_parsers_inline_quotes_are_cut() -> None:
    for error in (
        InvalidHeader(SECRET + b"\x01"),
        TransferEncodingError(f"Not a valid chunk: {SECRET!r}"),
        BadHttpMessage(f"Invalid header: bytearray({SECRET!r})"),
    ):
        info, status = malformed_request(error)
        assert status == 400 and "SECRET" not in info.message, info.message
    info, _ = malformed_request(BadHttpMethod("\x16\x03\x01"))
    assert info.message.endswith(": Received HTTPS traffic on an HTTP port")


def test_a_message_of_nothing_but_quoted_bytes_names_the_error_type() -> None:
    info, _ = malformed_request(InvalidHeader(SECRET))
    assert info.message == "the request is not valid HTTP/1.1: Invalid HTTP header"
    info, _ = malformed_request(BadHttpMessage(repr(SECRET)))
    assert info.message == "the request is not valid HTTP/1.1: BadHttpMessage"
