"""Server-wide endpoints: health, error taxonomy, system check, OpenAPI, the token cookie."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from aura.engine.config.inputs import not_utf8
from aura.engine.errors.taxonomy import TAXONOMY, AuraError
from aura.engine.tools.preflight import system_check
from aura.http.app import CONFIG, ENGINE
from aura.http.diagnostics import redact, secrets_of
from aura.http.openapi import openapi_document
from aura.http.security import COOKIE_NAME, session_value, token_matches, unauthorized
from aura.http.wire import ENCODER

__all__ = ["routes"]

routes = web.RouteTableDef()


class SessionRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str


def _json(value: Any) -> web.Response:
    return web.Response(body=ENCODER.encode(value), content_type="application/json")


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok", "lastSeq": request.app[ENGINE].log.last_seq})


@routes.get("/api/errors")
async def errors(request: web.Request) -> web.Response:
    return _json(
        {
            "errors": [
                {
                    "code": code,
                    "title": spec.title,
                    "remediation": spec.remediation,
                    "httpStatus": spec.http_status,
                }
                for code, spec in TAXONOMY.items()
            ]
        }
    )


@routes.get("/api/system-check")
async def system_check_route(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    findings = await system_check(engine.settings)  # with the saved provider settings
    secrets = secrets_of(request.app[CONFIG], engine)
    body = {"ok": not any(f.failed for f in findings), "findings": findings}
    return _json(redact(msgspec.to_builtins(body), secrets))


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


@routes.post("/api/session")
async def open_session(request: web.Request) -> web.Response:
    token = request.app[CONFIG].token
    try:
        given = msgspec.json.decode(await request.read(), type=SessionRequest).token
    except UnicodeDecodeError as e:
        raise not_utf8(e, "token") from e
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise AuraError.of("InvalidInput:token", f'send {{"token": ...}}: {e}') from e
    if token is None:
        return web.Response(status=204)
    if not token_matches(given, token):
        raise unauthorized()
    response = web.Response(status=204)
    response.set_cookie(
        COOKIE_NAME, session_value(token), httponly=True, samesite="Strict", path="/"
    )
    return response


@routes.delete("/api/session")
async def close_session(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    response.del_cookie(COOKIE_NAME, path="/")
    return response
