"""The CLI's HTTP client of a running server (`aura serve`): JSON calls and a job's SSE stream.

AURA_TOKEN, when set, is sent as a bearer token. Problem answers and refused connections become
one printable ApiError.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

__all__ = ["READ_TIMEOUT", "Api", "ApiError", "Message", "iter_sse", "open_session"]

#: a stream silent this long (the server pings every 15 s) is treated as dropped
READ_TIMEOUT = 45.0
#: the members of a job answer the CLI reads
_JOB_KEYS = ("jobId", "status", "attempt", "steps")

#: one SSE message: (id, event, data)
Message = tuple[int, str, dict[str, Any]]


class ApiError(Exception):
    """A problem+json answer (or the server being unreachable), as one printable message."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def open_session() -> aiohttp.ClientSession:
    """A session sending AURA_TOKEN (when set), with no total time limit for live streams."""
    token = os.environ.get("AURA_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT)
    return aiohttp.ClientSession(headers=headers, timeout=timeout)


class Api:
    """JSON calls to the server, turning problems and refused connections into ApiError."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def job(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call answered with a job (create, get, cancel, retry, rerun)."""
        job = await self.call(method, path, **kwargs)
        if not isinstance(job, dict) or any(key not in job for key in _JOB_KEYS):
            raise self.not_aura()
        return job

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(method, self.url + path, **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise ApiError(_problem_text(resp.status, body, self.url))
        except aiohttp.ClientConnectionError as e:
            raise self.unreachable(e) from None
        try:
            return json.loads(body) if body else None
        except ValueError:  # not JSON (UnicodeDecodeError included)
            raise self.not_aura() from None

    @contextlib.asynccontextmanager
    async def job_events(
        self, job_id: str, after: int | None
    ) -> AsyncIterator[AsyncIterator[Message] | None]:
        """The job's SSE messages after the id `after` (all with None), over one connection;
        None when its stream is over for good (204). A busy server (503) raises
        aiohttp.ClientResponseError (with the answer's headers: Retry-After), as a dropped
        connection raises aiohttp.ClientError."""
        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        url = f"{self.url}/api/jobs/{job_id}/events"
        async with self.session.get(url, headers=headers) as resp:
            if resp.status == 204:
                yield None
                return
            if resp.status == 503:  # ServerBusy (as many streams as it allows): try again later
                raise aiohttp.ClientResponseError(
                    resp.request_info,
                    resp.history,
                    status=503,
                    message="the server is busy",
                    headers=resp.headers,  # its Retry-After says when
                )
            if resp.status >= 400:
                raise ApiError(_problem_text(resp.status, await resp.read(), self.url))
            yield iter_sse(resp)

    def not_aura(self) -> ApiError:
        return ApiError(f"{self.url} answered, but not as an Aura server does: check --url", 2)

    def unreachable(self, error: BaseException) -> ApiError:
        return ApiError(
            f"no Aura server at {self.url} ({type(error).__name__}); start one with `aura serve`", 2
        )


def _problem_text(status: int, body: bytes, url: str) -> str:
    """A problem+json answer as one line, or what a server that is not Aura said."""
    try:
        problem = json.loads(body)
        return f"{problem['code']}: {problem['detail']} ({problem['remediation']})"
    except (ValueError, KeyError, TypeError):  # not a problem: one line of what it said
        said = " ".join(body[:200].decode(errors="replace").split())[:100]
        return f"HTTP {status} from {url}, not an Aura problem answer: {said!r}"


async def iter_sse(resp: aiohttp.ClientResponse) -> AsyncIterator[Message]:
    """(id, event, data) of each message of a text/event-stream response, until it ends."""
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields and "id" in fields:
            yield int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"])
        fields = {}
