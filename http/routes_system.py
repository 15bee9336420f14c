"""Server-wide endpoints: health, error taxonomy, system check, OpenAPI, the token cookie."""

from __future__ import annotations

import msgspec
from aiohttp import web
from msgspec.structs import replace

from aura.engine.config.inputs import DecodeFailure, decode_body
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import TAXONOMY, AuraError, make_error
from aura.engine.tools.preflight import system_check
from aura.http.diagnostics import redact, secrets_of
from aura.http.keys import CONFIG, ENGINE
from aura.http.openapi import openapi_document
from aura.http.security import COOKIE_NAME, session_value, token_matches, unauthorized
from aura.http.wire import json_response
from aura.projections.events import ErrorInfo

__all__ = ["routes"]

routes = web.RouteTableDef()


class SessionRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    token: str


_SESSION = msgspec.json.Decoder(SessionRequest)


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    refusal = engine.log_refusal()  # the log refuses writes: what happens is not recorded
    problems = [] if refusal is None else [_public(refusal)]
    if (job_list := engine.projector.problem()) is not None:
        problems.append(job_list)
    if (down := engine.log.unreachable_since) is not None:
        since = down.isoformat(timespec="seconds").replace("+00:00", "Z")
        message = "the log's database does not answer; the server reconnects by itself"
        problems.append(make_error("DatabaseUnavailable", message, details={"sinceUtc": since}))
    body = {
        "status": "degraded" if problems else "ok",
        "lastSeq": engine.log.last_seq,
        "jobList": _job_list_health(engine),
        "problems": problems,
    }
    return json_response(body, 503 if problems else 200)


def _public(refusal: ErrorInfo) -> ErrorInfo:
    """What health, open to anyone, may say of the log's refusal: not the store's own words
    nor which jobs wait (the token-guarded job views and system check say those)."""
    full = bool(refusal.details.get("full"))
    message = "the event log refuses writes" + (": the disk holding it is full" if full else "")
    details = {k: refusal.details[k] for k in ("full", "sinceUtc") if k in refusal.details}
    return replace(refusal, message=message, details=details)


def _job_list_health(engine: Engine) -> dict[str, object]:
    """Whether the job list is being rebuilt from the log, and how far it got (health stays
    200 meanwhile: jobs are submitted, run and read as usual)."""
    rebuilding, applied_seq, progress = engine.projector.progress()
    return {"rebuilding": rebuilding, "appliedSeq": applied_seq, "progress": round(progress, 4)}


@routes.get("/api/errors")
async def errors(request: web.Request) -> web.Response:
    return json_response(
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
    # with the saved provider settings, and whether the log takes this server's writes
    findings = await system_check(engine.settings, engine.log_refusal())
    secrets = secrets_of(request.app[CONFIG], engine)
    body = {"ok": not any(f.failed for f in findings), "findings": findings}
    return json_response(redact(msgspec.to_builtins(body), secrets))


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


@routes.post("/api/session")
async def open_session(request: web.Request) -> web.Response:
    token = request.app[CONFIG].token
    given = _session_token(await request.read())
    if token is None:
        return web.Response(status=204)
    if not token_matches(given, token):
        raise unauthorized()
    response = web.Response(status=204)
    response.set_cookie(
        COOKIE_NAME, session_value(token), httponly=True, samesite="Strict", path="/"
    )
    return response


def _session_token(body: bytes) -> str:
    """The token of a `POST /api/session` body, `{"token": ...}`."""
    return decode_body(body, _SESSION.decode, _not_a_session, field="token").token


def _not_a_session(error: DecodeFailure) -> AuraError:
    return AuraError.of("InvalidInput:token", f'send {{"token": ...}}: {error}')


@routes.delete("/api/session")
async def close_session(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    response.del_cookie(COOKIE_NAME, path="/")
    return response
