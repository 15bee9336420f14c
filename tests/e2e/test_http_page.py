"""The web page is served: `/` and `/static/{name}` with the right types, ETags (304), the CSP,
no path out of http/static/, and no token needed to read it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aura.http.routes_page import CSP, STATIC_DIR, load_static
from aura.tests.e2e.test_http_api import problem

TOKEN = "s3cret-token-for-page-tests"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


async def test_the_page_is_served_with_its_csp_etag_and_no_cache(client: Any) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Content-Security-Policy"] == CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert resp.headers["Cache-Control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{32}"', resp.headers["ETag"])
    html = await resp.text()
    assert html == (STATIC_DIR / "index.html").read_text()
    assert '<script type="module" src="/static/app.js"></script>' in html


async def test_every_static_file_has_its_type_and_a_content_etag(client: Any) -> None:
    files = sorted(p for p in STATIC_DIR.iterdir() if p.suffix in TYPES)
    assert {p.suffix for p in files} == set(TYPES)
    etags = set()
    for path in files:
        resp = await client.get(f"/static/{path.name}")
        assert resp.status == 200, path.name
        assert resp.headers["Content-Type"].split(";")[0] == TYPES[path.suffix], path.name
        assert resp.headers["Content-Security-Policy"] == CSP
        assert await resp.read() == path.read_bytes()
        etags.add(resp.headers["ETag"])
    assert len(etags) == len(files)  # a tag per content


async def test_a_matching_if_none_match_is_a_304_without_a_body(client: Any) -> None:
    etag = (await client.get("/static/app.js")).headers["ETag"]
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        resp = await client.get("/static/app.js", headers={"If-None-Match": given})
        assert resp.status == 304, given
        assert resp.headers["ETag"] == etag and await resp.read() == b""
    changed = await client.get("/static/app.js", headers={"If-None-Match": '"stale"'})
    assert changed.status == 200 and await changed.read()
    head = await client.head("/", headers={"If-None-Match": "*"})
    assert head.status == 304


async def test_every_module_the_page_imports_is_served(client: Any) -> None:
    """No module 404s in the browser: each import of each module names a served file."""
    imports = re.compile(r'^\s*(?:import|export)\b[^;]*?\bfrom\s+"\./([\w.-]+)"', re.M)
    seen = {"app.js"}
    pending = ["app.js"]
    while pending:
        resp = await client.get(f"/static/{pending.pop()}")
        assert resp.status == 200
        for name in imports.findall(await resp.text()):
            if name not in seen:
                seen.add(name)
                pending.append(name)
    assert {p.name for p in STATIC_DIR.glob("*.js")} == seen  # and no module is left unused


def test_the_html_has_no_inline_script_or_style() -> None:
    """The CSP forbids both: they would silently not run."""
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html)


async def _raw_get(port: int, target: str) -> tuple[int, str]:
    """A GET of `target` exactly as written (no client normalizes its dots or escapes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.decode("utf-8", "replace").partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


async def test_no_name_reaches_outside_the_static_folder(client: Any) -> None:
    for target in (
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2fsecurity.py",
        "/static/%2E%2E/routes_page.py",
        "/static/..%5croutes_page.py",
        "/static/.%2e/.%2e/pyproject.toml",
        "/static/routes_page.py",
        "/static/.hidden",
        "/static/nope.js",
        "/static/",
    ):
        status, body = await _raw_get(client.port, target)
        assert status == 404, (target, status)
        assert "def " not in body and "[project]" not in body, target
    await problem(await client.get("/static/nope.js"), 404, "NotFound")


def test_only_plain_files_of_known_types_are_loaded(tmp_path: Path) -> None:
    (tmp_path / "page.js").write_text("export {};\n")
    (tmp_path / "notes.md").write_text("not served\n")
    (tmp_path / ".env").write_text("SECRET=1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.js").write_text("export {};\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.js"
    outside.write_text("export const secret = 1;\n")
    (tmp_path / "linked.js").symlink_to(outside)
    assert set(load_static(tmp_path)) == {"page.js"}
    assert load_static(tmp_path / "missing") == {}


async def test_the_page_needs_no_token_but_the_api_still_does(make_client: Any) -> None:
    client = await make_client(token=TOKEN)
    assert (await client.get("/")).status == 200
    assert (await client.get("/static/jobs.js")).status == 200
    await problem(await client.get("/static/nope.js"), 404, "NotFound")
    await problem(await client.get("/api/jobs"), 401, "Unauthorized")
    await problem(await client.post("/", json={}), 401, "Unauthorized")  # only reading is open


async def test_the_guard_still_refuses_other_sites_the_page(client: Any) -> None:
    resp = await client.get("/", headers={"Origin": "http://evil.example"})
    await problem(resp, 403, "Forbidden")
    resp = await client.get("/static/app.js", headers={"Host": "attacker.example"})
    await problem(resp, 403, "Forbidden")
