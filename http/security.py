"""Access control: a bearer token (or the HttpOnly cookie the web page gets for it).

Bound to a loopback address, the server needs no token. Bound to any other address it refuses to
start without `AURA_TOKEN` (see aura.cli.serve), and then every API request must carry the token
as `Authorization: Bearer <token>` or carry the `aura_token` cookie, which `POST /api/session`
sets (HttpOnly, SameSite=Strict) so that the page's EventSource, which cannot set headers, works.
The cookie holds an HMAC of the token, not the token: no response ever carries the token, and it
is compared in constant time and never written to a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from aura.engine.errors import AuraError

__all__ = [
    "COOKIE_NAME",
    "OPEN_PATHS",
    "is_loopback",
    "make_auth_middleware",
    "session_value",
    "token_matches",
    "unauthorized",
]

COOKIE_NAME = "aura_token"
#: what anyone may call: the health probe and the exchange of a token for the cookie
OPEN_PATHS = frozenset({("GET", "/api/health"), ("POST", "/api/session")})


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def session_value(token: str) -> str:
    """The cookie's value: derived from the token, so no response ever carries the token."""
    return hmac.new(token.encode(), b"aura-session-cookie", hashlib.sha256).hexdigest()


def unauthorized() -> AuraError:
    return AuraError.of("Unauthorized", "this server requires its access token")


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return token_matches(value.strip(), token)
    return token_matches(request.cookies.get(COOKIE_NAME), session_value(token))


def make_auth_middleware(token: str | None) -> Middleware:
    """A middleware that requires `token` on every request but OPEN_PATHS (none if no token)."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or (request.method, request.path) in OPEN_PATHS:
            return await handler(request)
        if not _authorized(request, token):
            raise unauthorized()
        return await handler(request)

    return auth_middleware
