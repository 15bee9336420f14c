"""decode_body: the one mapping of a JSON body's failures to InvalidInput."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from aura.engine.config.inputs import DecodeFailure, decode_body
from aura.engine.errors.taxonomy import AuraError


class Token(msgspec.Struct, forbid_unknown_fields=True):
    token: str


def _invalid(error: DecodeFailure) -> AuraError:
    kind = "type" if isinstance(error, msgspec.ValidationError) else "syntax"
    return AuraError.of("InvalidInput:token", f"{kind}: {error}")


def _failure(
    body: bytes, decode: Callable[[bytes], Any] = msgspec.json.decode, field: str = "body"
) -> tuple[str, str]:
    with pytest.raises(AuraError) as raised:
        decode_body(body, decode, _invalid, field)
    return raised.value.info.code, raised.value.info.message


def test_a_body_decodes_to_its_type() -> None:
    decode = msgspec.json.Decoder(Token).decode
    assert decode_body(b'{"token": "t"}', decode, _invalid) == Token("t")


def test_each_failure_maps_to_its_invalid_input() -> None:
    # a decoder that reports bytes not UTF-8 as Python does (msgspec may, or may call it a
    # DecodeError, which the caller words)
    code, message = _failure(b'{"token": "\xff"}', lambda b: b.decode(), field="token")
    assert code == "InvalidInput:token" and "not UTF-8" in message
    code, message = _failure(b"[" * 100_000)  # an untyped decode recurses past its depth
    assert code == "InvalidInput:body" and "nested too deeply" in message
    assert _failure(b"[1,")[1].startswith("syntax: ")
    assert _failure(b'{"token": 1}', msgspec.json.Decoder(Token).decode)[1].startswith("type: ")
