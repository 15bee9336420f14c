"""The web page: `GET /` (index.html) and `GET /static/{name}` (its ES modules and CSS).

The files of `http/static/` are read once, when the app is made (they are small), with a strong
ETag of their content: a browser revalidates (`Cache-Control: no-cache`) and gets 304 while the
file is unchanged. Only a name of that folder's own files is ever served (a table lookup, so no
path can escape it); anything else is a 404 problem. Every answer carries the page's
Content-Security-Policy, which allows no inline script or style.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

from aura.engine.errors.taxonomy import AuraError

__all__ = ["CSP", "STATIC_DIR", "StaticFile", "add_page_routes", "load_static"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
#: a plain file name: no separator, no leading dot (nothing hidden, nothing relative)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StaticFile(NamedTuple):
    body: bytes
    content_type: str
    etag: str  #: quoted strong entity tag (a prefix of the content's SHA-256)


def load_static(folder: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """The folder's plain files of a known type, by name (subfolders and links are left out)."""
    files: dict[str, StaticFile] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        kind = _TYPES.get(path.suffix.lower())
        if kind is None or not _NAME.match(path.name) or path.is_symlink() or not path.is_file():
            continue
        body = path.read_bytes()
        files[path.name] = StaticFile(body, kind, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return files


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of an If-None-Match list (or `*`) with our tag."""
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)


def _answer(request: web.Request, file: StaticFile) -> web.Response:
    headers = {
        "ETag": file.etag,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if _matches(request.headers.get("If-None-Match", ""), file.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = file.content_type
    return web.Response(body=file.body, headers=headers)


def _not_found(name: str) -> AuraError:
    return AuraError.of("NotFound", f"the page has no file {name[:100]!r}")


def add_page_routes(app: web.Application, folder: Path = STATIC_DIR) -> None:
    """Serve the page from `folder`, read now."""
    files = load_static(folder)

    async def index(request: web.Request) -> web.Response:
        page = files.get("index.html")
        if page is None:
            raise _not_found("index.html")
        return _answer(request, page)

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        file = files.get(name)
        if file is None:
            raise _not_found(name)
        return _answer(request, file)

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
