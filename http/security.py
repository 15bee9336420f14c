"""Access control: a bearer token (or the HttpOnly cookie the web page gets for it), and a guard
against other sites.

Bound to a loopback address, the server needs no token. Bound to any other address it refuses to
start without `AURA_TOKEN` (see aura.cli.serve), and then every API request must carry the token
as `Authorization: Bearer <token>` or carry the `aura_token` cookie, which `POST /api/session`
sets (HttpOnly, SameSite=Strict) so that the page's EventSource, which cannot set headers, works.
The cookie holds an HMAC of the token, not the token: no response ever carries the token, and it
is compared in constant time and never written to a log line.

A page of another site can still make the browser send requests to a local server: "simple"
cross-site requests (a `text/plain` or form POST) need no preflight, and a DNS-rebinding page
calls the server under its own host name, as same-origin. So, token or not, the guard refuses
(403 `Forbidden`) a request whose `Origin` is not the server's own (`http://` or, behind a proxy
that ends TLS, `https://` plus its `Host`) or whose `Sec-Fetch-Site` is `cross-site`, and (415
`UnsupportedMediaType`) a body that is not `application/json`, which no page can send cross-site
without a CORS preflight this server never grants. Without a token it also refuses a `Host`
other than a loopback address (`127.0.0.1`, `localhost`, `[::1]`, any port). curl and the CLI
send no `Origin`; the server's own page sends its own."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from aura.engine.errors.taxonomy import AuraError

__all__ = [
    "COOKIE_NAME",
    "OPEN_PATHS",
    "PAGE_PREFIX",
    "is_loopback",
    "is_open",
    "make_auth_middleware",
    "make_guard_middleware",
    "session_value",
    "token_matches",
    "unauthorized",
    "weak_token",
]

COOKIE_NAME = "aura_token"
#: shorter tokens are refused: a token guards a server others can reach
MIN_TOKEN_LENGTH = 16
#: what anyone may call: the health probe and the exchange of a token for the cookie
OPEN_PATHS = frozenset({("GET", "/api/health"), ("POST", "/api/session")})
#: the web page (`/` and `/static/...`) holds no secret: anyone may read it, to enter the token
PAGE_PREFIX = "/static/"
JSON_CONTENT_TYPE = "application/json"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def weak_token(token: str) -> str | None:
    """Why `token` cannot guard a server (blank, whitespace, too short), or None if it can."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"it has {len(token)} characters; use at least {MIN_TOKEN_LENGTH}"
    if any(c.isspace() for c in token):
        return "it contains whitespace"
    return None


def token_matches(given: str | None, token: str) -> bool:
    # surrogateescape: a header that is not UTF-8 arrives with lone surrogates; it is simply wrong
    return given is not None and hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), token.encode()
    )


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


def is_open(method: str, path: str) -> bool:
    """Whether anyone may make this request without the token: OPEN_PATHS and the page."""
    if method in ("GET", "HEAD") and (path == "/" or path.startswith(PAGE_PREFIX)):
        return True
    return (method, path) in OPEN_PATHS


def make_auth_middleware(token: str | None) -> Middleware:
    """A middleware that requires `token` on every request but the open ones (none if no
    token)."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or is_open(request.method, request.path):
            return await handler(request)
        if not _authorized(request, token):
            raise unauthorized()
        return await handler(request)

    return auth_middleware


def _host_name(host: str) -> str:
    """The name in a `Host` value, without its port: `[::1]:8765` -> `[::1]`. A value that is
    not NAME or NAME:DIGITS (`[::1].evil.example`, `127.0.0.1:1@evil`) is returned whole, so
    it names no loopback address."""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return f"{name}]" if rest == "" or (rest[:1] == ":" and _is_port(rest[1:])) else host
    name, colon, port = host.rpartition(":")
    return name if colon and _is_port(port) else host


def _is_port(text: str) -> bool:
    return text == "" or (text.isascii() and text.isdigit())  # RFC 3986: port = *DIGIT


def _foreign_site(request: web.Request) -> AuraError | None:
    """Why the request comes from another site (its Origin, or the browser says so), if it does."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower() not in _own_origins(request.host):
        return AuraError.of("Forbidden", f"requests from {origin[:100]!r} are not accepted")
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return AuraError.of("Forbidden", "cross-site requests are not accepted")
    return None


def _own_origins(host: str) -> tuple[str, str]:
    """The origins of this server's own page under `host`: http, or https where a reverse proxy
    ends TLS in front of it (the host name is what tells sites apart; it is checked too)."""
    return f"http://{host}".lower(), f"https://{host}".lower()


def _foreign_host(request: web.Request) -> AuraError | None:
    """Without a token: a Host other than a loopback address (a DNS-rebinding page), if so."""
    if is_loopback(_host_name(request.host)):
        return None
    return AuraError.of(
        "Forbidden",
        f"this server (no AURA_TOKEN) answers only to a loopback host, not {request.host[:100]!r}",
        remediation="Use the server's loopback address (http://127.0.0.1:PORT or "
        "http://localhost:PORT), or set AURA_TOKEN to serve other host names.",
    )


def _not_json(request: web.Request) -> AuraError | None:
    if not request.body_exists or request.content_type == JSON_CONTENT_TYPE:
        return None
    return AuraError.of(
        "UnsupportedMediaType",
        f"the body must be {JSON_CONTENT_TYPE}, not {request.content_type[:100]!r}",
    )


def make_guard_middleware(token: str | None) -> Middleware:
    """A middleware that refuses other sites' requests, and non-JSON bodies (see above)."""

    @web.middleware
    async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = (
            (None if token is not None else _foreign_host(request))
            or _foreign_site(request)
            or _not_json(request)
        )
        if refusal is not None:
            raise refusal
        return await handler(request)

    return guard_middleware
