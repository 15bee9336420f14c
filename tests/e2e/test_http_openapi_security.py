"""OpenAPI matches the app's routes; the token guards a server bound beyond loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import msgspec
import pytest

from aura.engine.config.inputs import STEP_NAMES
from aura.engine.config.settings import Settings
from aura.http.keys import CONFIG
from aura.http.openapi import openapi_document
from aura.http.security import COOKIE_NAME, is_loopback
from aura.tests.e2e.helpers import finished_job, submit
from aura.tests.e2e.openapi_check import MISSING, request_errors
from aura.tests.e2e.openapi_check import errors as checked
from aura.tests.e2e.sse_client import read_events
from aura.tests.e2e.test_http_api import JOB_KEYS, problem

TOKEN = "s3cret-token-for-tests"


def app_routes(app: Any) -> set[tuple[str, str]]:
    """The API's routes and /metrics (the web page and its static files are not part of the
    API)."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical
        if route.method == "HEAD" or not (path.startswith("/api/") or path == "/metrics"):
            continue  # aiohttp adds HEAD to every GET
        routes.add((route.method.lower(), route.resource.canonical))
    return routes


def document_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in doc["paths"].items() for method in ops}


async def test_openapi_document_matches_the_apps_routes(client: Any) -> None:
    served = await (await client.get("/api/openapi.json")).json()
    assert served == msgspec.json.decode(msgspec.json.encode(openapi_document()))
    assert served["openapi"].startswith("3.1")
    assert document_routes(served) == app_routes(client.app)
    ids = [op["operationId"] for ops in served["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


async def test_openapi_job_schema_is_the_served_job_shape(client: Any) -> None:
    schemas = openapi_document()["components"]["schemas"]
    assert set(schemas["JobView"]["properties"]) == JOB_KEYS
    assert set(schemas["JobView"]["required"]) == JOB_KEYS
    job = await submit(client)
    assert set(job) == set(schemas["JobView"]["properties"])
    refs = {
        ref
        for ops in openapi_document()["paths"].values()
        for op in ops.values()
        for ref in _refs(op)
    }
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(schemas)


async def test_openapi_says_a_brief_needs_its_script(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    assert "script" in doc["components"]["schemas"]["Brief"]["required"]
    resp = await client.post("/api/jobs", json={"preset": "default", "brief": {"title": "x"}})
    assert resp.status == 400  # as the document says


async def test_openapi_names_the_headers_answers_carry(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    paths = doc["paths"]
    create = paths["/api/jobs"]["post"]["responses"]
    assert {"Location", "X-Correlation-Id"} <= set(create["201"]["headers"])
    assert "Idempotent-Replayed" in create["200"]["headers"]
    assert "Retry-After" in paths["/api/jobs/{id}/events"]["get"]["responses"]["503"]["headers"]
    assert "Content-Range" in paths["/api/jobs/{id}/output"]["get"]["responses"]["416"]["headers"]
    # and the server sends them
    headers = {"Idempotency-Key": "doc-headers"}
    first = await client.post("/api/jobs", json={}, headers=headers)
    job_id = (await first.json())["jobId"]
    assert first.status == 201 and first.headers["Location"] == f"/api/jobs/{job_id}"
    again = await client.post("/api/jobs", json={}, headers=headers)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/api/jobs/{job_id}"
    assert all("X-Correlation-Id" in r.headers for r in (first, again))


async def test_openapi_says_which_operations_need_the_token(make_client: Any) -> None:
    client = await make_client(token=TOKEN)
    doc = openapi_document()
    assert doc["security"] == [{"bearer": []}, {"cookie": []}, {}]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            resp = await client.request(method, path.replace("{id}", "x"), json={})
            open_to_all = op.get("security") == []
            assert (resp.status != 401) is open_to_all, (method, path, resp.status)


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if "$ref" in value else []
        return found + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.10", "::", "example.com"))


async def test_with_a_token_every_api_call_needs_it(make_client: Any) -> None:
    client = await make_client(token=TOKEN)
    for method, path in (("get", "/api/jobs"), ("post", "/api/jobs"), ("get", "/api/jobs/x")):
        await problem(await client.request(method, path), 401, "Unauthorized")
    bad = {"Authorization": "Bearer wrong"}
    resp = await client.get("/api/jobs", headers=bad)
    await problem(resp, 401, "Unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert (await client.get("/api/health")).status == 200
    good = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post("/api/jobs", json={}, headers=good)
    assert resp.status == 201
    assert TOKEN not in await resp.text()


async def test_credentials_that_are_not_utf8_are_a_401_not_a_500(make_client: Any) -> None:
    client = await make_client(token=TOKEN)
    for header in (b"Authorization: Bearer \xff\xfe", b"Cookie: aura_token=\xff\xfe"):
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        request = b"GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % header
        writer.write(request + b"Connection: close\r\n\r\n")
        status_line = await reader.readline()
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 401 "), (header, status_line)


async def test_the_session_cookie_lets_event_source_follow_a_job(make_client: Any) -> None:
    client = await make_client(token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    job = await (await client.post("/api/jobs", json={}, headers=auth)).json()
    await problem(await client.post("/api/session", json={"token": "nope"}), 401, "Unauthorized")
    jar = aiohttp.CookieJar(unsafe=True)  # the test server is an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        url = client.make_url(f"/api/jobs/{job['jobId']}/events")
        async with browser.get(url) as resp:
            assert resp.status == 401
        async with browser.post(client.make_url("/api/session"), json={"token": TOKEN}) as resp:
            assert resp.status == 204
            cookie = resp.cookies[COOKIE_NAME]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert TOKEN not in cookie.value and TOKEN not in str(resp.headers)
        async with browser.get(url) as resp:
            assert resp.status == 200
            events = await read_events(resp)
        assert events[-1].event == "job-completed"
        async with browser.delete(client.make_url("/api/session")) as resp:
            assert resp.status == 204
        async with browser.get(client.make_url("/api/jobs")) as resp:
            assert resp.status == 401


async def test_without_a_token_loopback_needs_none(client: Any) -> None:
    job = await finished_job(client)
    resp = await client.get(f"/api/jobs/{job['jobId']}")
    assert resp.status == 200 and set(await resp.json()) == JOB_KEYS


def own_origin(client: Any) -> str:
    return f"http://{client.host}:{client.port}"


async def test_a_cross_site_text_plain_post_is_refused(client: Any) -> None:
    body = b'{"preset": "sample-hello-youtube"}'
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    await problem(await client.post("/api/jobs", data=body, headers=evil), 403, "Forbidden")
    plain = {"Content-Type": "text/plain"}
    await problem(
        await client.post("/api/jobs", data=body, headers=plain), 415, "UnsupportedMediaType"
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    await problem(
        await client.post("/api/jobs", data=b"preset=x", headers=form), 415, "UnsupportedMediaType"
    )
    await problem(
        await client.post("/api/jobs", json={}, headers={"Origin": "null"}), 403, "Forbidden"
    )
    fetch = {"Sec-Fetch-Site": "cross-site"}
    await problem(await client.post("/api/jobs", json={}, headers=fetch), 403, "Forbidden")
    await problem(await client.get("/api/jobs", headers=fetch), 403, "Forbidden")
    assert (await (await client.get("/api/jobs")).json())["jobs"] == []


async def test_same_origin_pages_and_clients_without_origin_are_served(client: Any) -> None:
    same = {"Origin": own_origin(client), "Sec-Fetch-Site": "same-origin"}
    resp = await client.post("/api/jobs", json={}, headers=same)
    assert resp.status == 201, await resp.text()
    job = await resp.json()
    typed = {"Content-Type": "application/json; charset=utf-8"}
    assert (await client.post("/api/jobs", data=b"{}", headers=typed)).status == 201
    async with client.get(f"/api/jobs/{job['jobId']}/events", headers=same) as resp:
        assert resp.status == 200
        assert (await read_events(resp))[-1].event == "job-completed"
    resp = await client.post(f"/api/jobs/{job['jobId']}/rerun", headers=same)  # no body
    assert resp.status == 202, await resp.text()


async def test_without_a_token_only_loopback_host_names_are_answered(
    make_client: Any, tmp_path: Path
) -> None:
    client = await make_client()
    foreign = ("attacker.example", f"attacker.example:{client.port}", "10.0.0.1")
    malformed = ("[::1].evil.example", "127.0.0.1:1@evil.example", "[::1]x", "127.0.0.1:٣")
    for host in (*foreign, *malformed):
        body = await problem(
            await client.get("/api/jobs", headers={"Host": host}), 403, "Forbidden"
        )
        assert "AURA_TOKEN" in body["remediation"]
    for host in ("127.0.0.1", f"localhost:{client.port}", f"[::1]:{client.port}"):
        assert (await client.get("/api/jobs", headers={"Host": host})).status == 200
    rebound = {"Host": f"attacker.example:{client.port}"}
    rebound["Origin"] = f"http://{rebound['Host']}"
    await problem(await client.post("/api/jobs", json={}, headers=rebound), 403, "Forbidden")
    # served beyond loopback, under any name (one engine per data folder: another folder)
    with_token = await make_client(token=TOKEN, settings=Settings(data_dir=tmp_path / "other"))
    named = {"Host": "aura.example:8765", "Authorization": f"Bearer {TOKEN}"}
    assert (await with_token.get("/api/jobs", headers=named)).status == 200
    named["Origin"] = "http://evil.example"
    await problem(await with_token.get("/api/jobs", headers=named), 403, "Forbidden")


async def test_create_app_takes_no_secret_from_the_environment(
    monkeypatch: Any, make_client: Any
) -> None:
    monkeypatch.setenv("AURA_TOKEN", TOKEN)
    client = await make_client()  # the token is the caller's (aura serve reads AURA_TOKEN)
    assert client.app[CONFIG].token is None
    assert (await client.get("/api/jobs")).status == 200  # no Authorization needed


# ---- the document is as strict as the server ---------------------------------------------


class Req(NamedTuple):
    method: str
    path: str  # `{job}`: a job of the server
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    body: Any = MISSING


def _job(body: Any = MISSING, **headers: str) -> Req:
    return Req("post", "/api/jobs", {}, headers, body)


def _brief(**members: Any) -> Req:
    return _job({"brief": {"script": ["A line."], **members}})


def _list(**query: str) -> Req:
    return Req("get", "/api/jobs", query)


def _settings(body: Any = MISSING) -> Req:
    return Req("put", "/api/settings", body=body)


def _url(url: str) -> Req:
    return _settings({"openaiApiKey": "sk-test-0123", "openaiBaseUrl": url})


_JOB_BODIES: tuple[Any, ...] = ({"preset": "default"}, {"x": 1}, [], {"options": None}, 5, "{}")
_SESSION_BODIES: tuple[Any, ...] = ({"token": "t", "x": 1}, {}, {"token": 5}, [])
#: requests the server refuses (400) for what a schema can say: the document must refuse each
#: (a refusal that depends on the server's state, such as a cursor's job, is not among them)
REFUSED = (
    *(_job({"preset": p, "brief": None}) for p in ("default", "other")),
    *(_job(body) for body in _JOB_BODIES),
    _job({"brief": {"title": "No script"}}),
    *(
        _brief(script=s)
        for s in ([], ["x" * 301], ["ok"] * 21, ["a\u0001b"], ["a\nb"], ["\u200b\u3000 "])
    ),
    *(_brief(title=t) for t in ("", "x" * 121, "  ", "a\tb", "\u00ad\ufeff")),
    _brief(voice="en us"),
    _brief(aspect="4:3"),
    _brief(tts="say"),
    _brief(colour="red"),
    *(_job({"options": {"timeouts": t}}) for t in ({"render": 5}, {"mux": 0}, {"mux": -1})),
    *(_job({"options": {"timeouts": {"mux": t}}}) for t in (86_400.5, "60", None)),
    _job({"options": {"quality": "ultra"}}),
    _job({"options": {"speed": 2}}),
    _job({}, **{"Idempotency-Key": "k" * 201}),
    _job({}, **{"Idempotency-Key": "a\tb"}),
    *(_list(limit=v) for v in ("0", "501", "x", "1.5", "")),
    *(_list(offset=v) for v in ("-1", str(10**9 + 1), "1e3", "9" * 5000)),
    *(_list(status=v) for v in ("Done", "queued", "")),
    *(_list(cursor=v) for v in ("", "a b", "a+b", "abc=", "A" * 513)),
    *(Req("get", "/api/jobs/{job}", {"at": v}) for v in ("-1", "1e3", "9" * 19, "", "x")),
    *(Req("get", "/api/jobs/{job}/events", headers={"Last-Event-ID": v}) for v in ("x", "9" * 19)),
    *(Req("get", "/api/events", {"lastEventId": v}) for v in ("-1", "9" * 19)),
    *(Req("post", f"/api/jobs/{{job}}/{a}", body=[1]) for a in ("cancel", "retry", "rerun")),
    _settings(),
    *(_settings({"openaiApiKey": k}) for k in ("abc", "k" * 513, "has space", "tab\tkey", 5)),
    _settings({"openaiBaseUrl": "https://api.example/v1"}),
    _settings({"openaiBaseUrl": "https://api.example/v1", "openaiApiKey": None}),
    _settings({"other": 1}),
    _settings([]),
    *(_url(u) for u in ("ftp://h/v1", "https://u:p@h/v1", "https://h/v1?x=1", "https://h/v1#f")),
    *(_url(u) for u in ("https://h:70000/", "http://[1]/", "/v1", "https://h/" + "a" * 2049)),
    *(Req("post", "/api/session", body=body) for body in _SESSION_BODIES),
    Req("post", "/api/session"),
)


def _accepted(cursor: str) -> tuple[Req, ...]:
    """Requests the server answers with a success: the document must allow each."""
    timeouts = dict.fromkeys(STEP_NAMES, 86_400) | {"mux": 0.001}
    return (
        _job(),
        _job({}, **{"Idempotency-Key": "a key with spaces, ünïcödé and " + "k" * 150}),
        _job({"preset": "default", "brief": {"title": "Été ☀", "script": ["Ça va? 🙂", " x "]}}),
        _job({"options": {"timeouts": timeouts, "quality": "high"}}),
        _list(limit="500", offset=str(10**9), status="Queued"),
        _list(cursor=cursor, limit="1"),
        Req("get", "/api/jobs/{job}", {"at": "9" * 18}),
        Req("post", "/api/jobs/{job}/rerun", body={}),
        _url("http://[::1]:8080/v1"),
        _url("HTTPS://api.example.com:65535/v1/"),
        _settings({"openaiApiKey": None}),
        _settings({}),
        Req("post", "/api/session", body={"token": "anything"}),
    )


async def _sent(client: Any, doc: Any, req: Req, job_id: str) -> tuple[Any, list[str]]:
    """The server's answer to `req`, and why the document refuses it (empty: it allows it)."""
    path = req.path.replace("{job}", job_id)
    kwargs: dict[str, Any] = {"params": req.query, "headers": req.headers}
    if req.body is not MISSING:
        kwargs["json"] = req.body
    resp = await client.request(req.method, path, **kwargs)
    await resp.read()
    refused = request_errors(
        doc, req.method, path, query=req.query, headers=req.headers, body=req.body
    )
    return resp, refused


async def test_the_document_refuses_what_the_server_refuses(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    job = await finished_job(client)
    await finished_job(client)  # two jobs: a list of one of them has a next page
    for req in REFUSED:
        resp, refused = await _sent(client, doc, req, job["jobId"])
        body = await resp.json()
        assert resp.status == 400 and body["code"].startswith("InvalidInput"), (req, body)
        assert refused, f"the document allows {req!r:.300}, refused: {body['detail']}"
    listed = await (await client.get("/api/jobs?limit=1")).json()
    for req in _accepted(listed["nextCursor"]):
        resp, refused = await _sent(client, doc, req, job["jobId"])
        assert resp.status < 300, (req, await resp.text())
        assert not refused, (req, refused)  # and not stricter than the server
    schemas = doc["components"]["schemas"]
    assert not checked(schemas["JobList"], listed, doc) and listed["nextCursor"]
    shown = await (await client.get(f"/api/jobs/{job['jobId']}")).json()
    assert not checked(schemas["JobView"], shown, doc)


def test_the_checker_refuses_a_keyword_it_does_not_know() -> None:
    with pytest.raises(AssertionError, match="propertyNames"):
        checked({"propertyNames": {"maxLength": 1}}, {"ab": 1}, {})
    assert checked({"pattern": "^a$"}, "a\n", {})  # `$` ends the input, as in ECMA-262


async def test_the_page_behind_a_proxy_that_ends_tls_is_same_origin(client: Any) -> None:
    # the proxy passes the public Host on; the browser's Origin is https plus that host
    host = f"{client.host}:{client.port}"
    for origin in (f"https://{host}", f"HTTPS://{host.upper()}"):
        resp = await client.post("/api/jobs", json={}, headers={"Origin": origin})
        assert resp.status == 201, await resp.text()
    for origin in (f"https://{host}.evil.example", f"ftp://{host}", f"https://{host}:1"):
        resp = await client.post("/api/jobs", json={}, headers={"Origin": origin})
        await problem(resp, 403, "Forbidden")
