"""`/api/settings`: the provider settings the page saves (the OpenAI key and base URL).

GET says whether a key is configured and where it comes from, never the key; PUT saves the
members it names (null removes a saved value) and answers as GET. Storage, validation and
precedence live in aura.engine.config.saved_settings; the engine applies a save to the runs that
start after it.
"""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from aura.engine.config.inputs import DecodeFailure, decode_body
from aura.engine.config.saved_settings import KEY_FIELD, URL_FIELD, SettingsUpdate
from aura.engine.errors.taxonomy import AuraError
from aura.http.keys import ENGINE
from aura.http.wire import json_response

__all__ = ["routes"]

routes = web.RouteTableDef()

_DECODER = msgspec.json.Decoder(SettingsUpdate)
#: the member msgspec names in a type error (`... - at `$.openaiApiKey``)
_AT_MEMBER = re.compile(r"at `\$\.(\w+)`")


def _body_error(message: str) -> AuraError:
    return AuraError.of("InvalidInput:body", message, details={"field": "body"})


def decode_update(body: bytes) -> SettingsUpdate:
    """The PUT body; InvalidInput naming the member at fault. No message quotes a value sent
    (it may be the key)."""
    if not body.strip():
        raise _body_error(f"send a JSON object with {KEY_FIELD} and/or {URL_FIELD}")
    return decode_body(body, _DECODER.decode, _invalid)


def _invalid(error: DecodeFailure) -> AuraError:
    if not isinstance(error, msgspec.ValidationError):  # (a ValidationError is a DecodeError)
        return _body_error("the body is not JSON")
    text = str(error)
    member = _AT_MEMBER.search(text)
    if text.startswith("Object contains unknown field") or member is None:
        return _body_error(
            f"the body must be a JSON object whose members are {KEY_FIELD} and {URL_FIELD} only"
        )
    field = member.group(1)
    return AuraError.of(
        f"InvalidInput:{field}",
        f"{field} must be a string, or null to remove the saved value",
        details={"field": field},
    )


@routes.get("/api/settings")
async def get_settings(request: web.Request) -> web.Response:
    return json_response(request.app[ENGINE].settings_view())


@routes.put("/api/settings")
async def put_settings(request: web.Request) -> web.Response:
    update = decode_update(await request.read())
    return json_response(await request.app[ENGINE].save_settings(update))
