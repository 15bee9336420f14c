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

from aura.engine.config.inputs import not_utf8
from aura.engine.config.saved_settings import KEY_FIELD, URL_FIELD, SettingsUpdate, SettingsView
from aura.engine.errors.taxonomy import AuraError
from aura.http.app import ENGINE
from aura.http.wire import ENCODER

__all__ = ["routes"]

routes = web.RouteTableDef()

_DECODER = msgspec.json.Decoder(SettingsUpdate)
#: the member msgspec names in a type error (`... - at `$.openaiApiKey``)
_AT_MEMBER = re.compile(r"at `\$\.(\w+)`")


def _answer(settings: SettingsView) -> web.Response:
    return web.Response(body=ENCODER.encode(settings), content_type="application/json")


def _body_error(message: str) -> AuraError:
    return AuraError.of("InvalidInput:body", message, details={"field": "body"})


def decode_update(body: bytes) -> SettingsUpdate:
    """The PUT body; InvalidInput naming the member at fault. No message quotes a value sent
    (it may be the key)."""
    if not body.strip():
        raise _body_error(f"send a JSON object with {KEY_FIELD} and/or {URL_FIELD}")
    try:
        return _DECODER.decode(body)
    except UnicodeDecodeError as e:
        raise not_utf8(e) from e
    except msgspec.ValidationError as e:
        text = str(e)
        member = _AT_MEMBER.search(text)
        if text.startswith("Object contains unknown field") or member is None:
            raise _body_error(
                f"the body must be a JSON object whose members are {KEY_FIELD} and {URL_FIELD} only"
            ) from None
        field = member.group(1)
        raise AuraError.of(
            f"InvalidInput:{field}",
            f"{field} must be a string, or null to remove the saved value",
            details={"field": field},
        ) from None
    except (msgspec.DecodeError, RecursionError):
        raise _body_error("the body is not JSON") from None


@routes.get("/api/settings")
async def get_settings(request: web.Request) -> web.Response:
    return _answer(request.app[ENGINE].settings_view())


@routes.put("/api/settings")
async def put_settings(request: web.Request) -> web.Response:
    update = decode_update(await request.read())
    return _answer(await request.app[ENGINE].save_settings(update))
