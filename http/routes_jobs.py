"""`/api/jobs...`: create, list, read (now or at a past seq), follow (SSE), cancel, retry, rerun,
log, diagnostics, output; `/api/events`, the job list's changes (SSE).

Handlers parse, call the engine and encode; errors are raised as AuraError and the problem
middleware answers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from pathlib import Path

import msgspec
from aiohttp import web
from aiohttp.helpers import ETAG_ANY

from aura.engine.config.inputs import DecodeFailure, JobRequest, decode_body, decode_request
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import AuraError, JobNotFound
from aura.engine.files.job_files import located
from aura.engine.run.decide import request_of
from aura.http.diagnostics import LineRedactor, diagnostics, secrets_of
from aura.http.keys import CONFIG, ENGINE, FANOUT, JOB_LIST_FEED, STREAMS
from aura.http.list_query import MAX_DIGITS, encode_cursor, invalid_cursor, list_query
from aura.http.ranges import Ranged, decide_range
from aura.http.sse import given_last_event_id, parse_last_event_id, serve_job_stream
from aura.http.sse_jobs import serve_list_stream
from aura.http.wire import ENCODER, job_list, job_view, json_response, log_line
from aura.projections.events import JobCreated, Recorded
from aura.projections.job import JobState, fold
from aura.store.jobs_table import UnknownPosition

__all__ = ["routes"]

routes = web.RouteTableDef()
#: whether the event streams answer HEAD: no (405 MethodNotAllowed). A stream's events go
#: straight to the socket, after the head of a HEAD too, and a live one never ends: the
#: connection would never serve its next request
_STREAMS_ANSWER_HEAD = False

NDJSON = "application/x-ndjson"
VIDEO = "video/mp4"
#: events per page when streaming a job's log
LOG_PAGE = 500


async def _job(
    request: web.Request,
    state: JobState,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The job as it is now, with its ETA (and what the log refuses to record about it)."""
    eta = await request.app[ENGINE].eta(state)
    unrecorded = request.app[ENGINE].unrecorded(state.job_id)
    return json_response(job_view(state, eta, unrecorded), status, headers)


def _invalid(field: str, message: str) -> AuraError:
    return AuraError.of(f"InvalidInput:{field}", message, details={"field": field})


async def _optional_body(request: web.Request) -> None:
    """Action endpoints take no parameters: a body, if any, must be a JSON object."""
    body = await request.read()
    if body.strip() and not isinstance(decode_body(body, msgspec.json.decode, _not_json), dict):
        raise _invalid("body", "the body must be a JSON object (or empty)")


def _not_json(error: DecodeFailure) -> AuraError:
    return _invalid("body", f"the body is not JSON: {error}")


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 200:
        raise _invalid("Idempotency-Key", "Idempotency-Key must be at most 200 characters")
    if key is not None and not key.isprintable():  # bytes not UTF-8 arrive as surrogates
        raise _invalid("Idempotency-Key", "Idempotency-Key must be printable UTF-8 text")
    return key


@routes.post("/api/jobs")
async def create_job(request: web.Request) -> web.Response:
    job_request = decode_request(await request.read())
    key = _idempotency_key(request)
    engine = request.app[ENGINE]
    field = _secret_field(job_request, key, secrets_of(request.app[CONFIG], engine))
    if field is not None:
        raise _holds_secret(field, f"{field} cannot be used")
    submitted = await engine.submit(job_request, idempotency_key=key)
    headers = {"Location": f"/api/jobs/{submitted.job.job_id}"}
    if submitted.duplicate:
        headers["Idempotent-Replayed"] = "true"
        return await _job(request, submitted.job, 200, headers)
    return await _job(request, submitted.job, 201, headers)


@routes.get("/api/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    query = list_query(request)
    try:
        page = await request.app[ENGINE].list_page(
            status=query.status, limit=query.limit, offset=query.offset or 0, after=query.after
        )
    except UnknownPosition:
        raise invalid_cursor("it names no job of this list") from None
    following = None if page.next is None else encode_cursor(page.next, query.status)
    body = job_list(
        page.rows, query.limit, query.offset, following, page.last_seq, rebuilding=page.rebuilding
    )
    return json_response(body)


@routes.get("/api/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    engine, job_id = request.app[ENGINE], request.match_info["id"]
    at = _seq_query(request, "at")
    if at is None:
        return await _job(request, await engine.get(job_id))
    return json_response(job_view(await _state_at(engine, job_id, at)))  # a past view has no ETA


def _seq_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_DIGITS:
        raise _invalid(name, f"{name} must be an event seq (an integer >= 0), got {raw[:40]!r}")
    return int(raw)


async def _state_at(engine: Engine, job_id: str, at: int) -> JobState:
    """The job as of seq `at`: the server's fold of its events up to it."""
    records = await engine.log.read(job_id)
    if not records:
        raise JobNotFound(job_id)
    state = fold(itertools.takewhile(lambda rec: rec.seq <= at, records))
    if state is None:
        first = records[0].seq
        raise _invalid("at", f"job {job_id} begins at seq {first}: at must be at least that")
    return state


def _secret_field(job: JobRequest, key: str | None, secrets: tuple[str, ...]) -> str | None:
    """The first field of a job's inputs that holds a secret (the server's token, an API key
    configured now or earlier), or None. What a job is given is stored in its JobCreated for
    good and shown by /log, so a secret must never get in."""
    fields: list[tuple[str, str]] = []
    if job.brief is not None:
        fields.append(("brief.title", job.brief.title))
        fields += [(f"brief.script[{i}]", line) for i, line in enumerate(job.brief.script)]
        fields.append(("brief.voice", job.brief.voice))
    if key is not None:
        fields.append(("Idempotency-Key", key))
    for field, text in fields:
        if any(secret in text for secret in secrets):
            return field
    return None


def _holds_secret(field: str, what: str) -> AuraError:
    return AuraError.of(
        f"InvalidInput:{field}",
        f"{what}: it contains a configured API key (or the server's token), and a job's inputs "
        "are stored and shown as given",
        remediation=f"Remove the key from {field} and submit the job again.",
        details={"field": field},
    )


def _refuse_if_busy(request: web.Request) -> None:
    """ServerBusy when as many streams (job streams and list streams) are open as allowed."""
    limit = request.app[CONFIG].stream.max_streams
    count = request.app[FANOUT].listener_count + request.app[JOB_LIST_FEED].listener_count
    if count >= limit:
        raise AuraError.of(
            "ServerBusy",
            f"the server has {count} streams open, its limit",
            details={"maxStreams": limit},
        )


@routes.get("/api/jobs/{id}/events", allow_head=_STREAMS_ANSWER_HEAD)
async def job_events(request: web.Request) -> web.StreamResponse:
    state = await request.app[ENGINE].get(request.match_info["id"])
    # a job that ended answers 204 to any id at or after its end (the browser then stops)
    newest = None if state.is_terminal else request.app[FANOUT].log.last_seq
    after = parse_last_event_id(request, newest)
    _refuse_if_busy(request)
    return await serve_job_stream(
        request,
        fanout=request.app[FANOUT],
        streams=request.app[STREAMS],
        config=request.app[CONFIG].stream,
        job_id=state.job_id,
        after=after,
        terminal=state.is_terminal,
    )


@routes.get("/api/events", allow_head=_STREAMS_ANSWER_HEAD)
async def job_list_events(request: web.Request) -> web.StreamResponse:
    feed = request.app[JOB_LIST_FEED]
    if given_last_event_id(request) is not None:
        # the log's newest as committed (a list's lastSeq is read from the database)
        after = parse_last_event_id(request, await feed.log.max_seq())
    else:
        after = feed.log.last_seq  # live, from now
    _refuse_if_busy(request)
    return await serve_list_stream(
        request,
        feed=feed,
        streams=request.app[STREAMS],
        config=request.app[CONFIG].stream,
        after=after,
    )


@routes.post("/api/jobs/{id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    await _optional_body(request)
    return await _job(request, await request.app[ENGINE].cancel(request.match_info["id"]), 202)


@routes.post("/api/jobs/{id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    await _optional_body(request)
    return await _job(request, await request.app[ENGINE].retry(request.match_info["id"]), 202)


@routes.post("/api/jobs/{id}/rerun")
async def rerun_job(request: web.Request) -> web.Response:
    await _optional_body(request)
    engine, job_id = request.app[ENGINE], request.match_info["id"]
    secrets = secrets_of(request.app[CONFIG], engine)
    first = await engine.log.read_job_after_seq(job_id, 0, 1) if secrets else []
    if first and isinstance(created := first[0].event, JobCreated):
        # a brief stored before its secret was configured: a rerun would store it again
        field = _secret_field(request_of(created), None, secrets)
        if field is not None:
            raise _holds_secret(field, f"job {job_id}'s {field} cannot be run again")
    state = await engine.rerun(job_id)
    return await _job(request, state, 202, {"Location": f"/api/jobs/{state.job_id}"})


@routes.get("/api/jobs/{id}/log")
async def job_log(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    job_id = (await engine.get(request.match_info["id"])).job_id
    secrets = secrets_of(request.app[CONFIG], engine)
    redacted = LineRedactor(secrets) if secrets else None
    resp = web.StreamResponse(headers={"Content-Type": NDJSON})
    await resp.prepare(request)
    after = 0
    while _has_content(request) and (
        page := await engine.log.read_job_after_seq(job_id, after, LOG_PAGE)
    ):
        await resp.write(_ndjson(page, redacted))
        after = page[-1].seq
    await resp.write_eof()
    return resp


def _has_content(request: web.Request) -> bool:
    """Whether the answer carries content: not for a HEAD, whose answer ends with its head
    (a StreamResponse sends whatever is written, for a HEAD too)."""
    return request.method != "HEAD"


def _ndjson(page: list[Recorded], redacted: LineRedactor | None) -> bytes:
    """A page of /log: one line per event."""
    lines = (ENCODER.encode(log_line(rec)) for rec in page)
    if redacted is not None:  # a brief stored before its secret was configured
        lines = (redacted(line) for line in lines)
    return b"".join(line + b"\n" for line in lines)


@routes.get("/api/jobs/{id}/diagnostics")
async def job_diagnostics(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    state = await engine.get(request.match_info["id"])
    records = await engine.log.read(state.job_id)
    return json_response(diagnostics(state, records, request.app[CONFIG], engine))


@routes.get("/api/jobs/{id}/output")
async def job_output(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    state = await engine.get(request.match_info["id"])
    path = _served_path(state, engine.settings)
    st = path.stat()
    _check_preconditions(request, st)
    if _ranged(request, st) is Ranged.WHOLE and "Range" in request.headers:
        return await _send_whole(request, path)
    return web.FileResponse(path, headers={"Content-Type": VIDEO})


def _ranged(request: web.Request, st: os.stat_result) -> Ranged:
    """How to answer the request's Range for the file `st`; RangeNotSatisfiable when it asks
    for no byte of it."""
    asked, size = request.headers.get("Range"), st.st_size
    ranged = decide_range(asked, request.headers.get("If-Range"), _etag(st), size)
    if ranged is Ranged.UNSATISFIABLE:
        raise AuraError.of(
            "RangeNotSatisfiable",
            f"{(asked or '')[:100]!r} asks for no byte of this {size}-byte video",
            details={"sizeBytes": size},
        )
    return ranged


def _check_preconditions(request: web.Request, st: os.stat_result) -> None:
    """PreconditionFailed where FileResponse would answer 412 (as it decides, RFC 9110 13.1.1
    and 13.1.4), so the answer is a problem, not an empty video/mp4."""
    etag = _etag(st)
    if (if_match := request.if_match) is not None:
        if not any(tag.value in (etag, ETAG_ANY) and not tag.is_weak for tag in if_match):
            raise AuraError.of("PreconditionFailed", "If-Match names none of the video's ETag")
    elif (since := request.if_unmodified_since) is not None and st.st_mtime > since.timestamp():
        raise AuraError.of("PreconditionFailed", "the video was modified after If-Unmodified-Since")


def _etag(st: os.stat_result) -> str:
    """The ETag value FileResponse gives a file (so If-Range compares like with like)."""
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


async def _send_whole(request: web.Request, path: Path) -> web.StreamResponse:
    """The whole video, 200, for a request whose Range is to be ignored (FileResponse would
    apply it)."""
    loop = asyncio.get_running_loop()
    with await loop.run_in_executor(None, path.open, "rb") as video:
        st = os.fstat(video.fileno())
        resp = web.StreamResponse(headers={"Content-Type": VIDEO, "Accept-Ranges": "bytes"})
        resp.content_length = st.st_size
        resp.etag = _etag(st)
        resp.last_modified = st.st_mtime
        with contextlib.suppress(ConnectionResetError):  # the client went away
            await resp.prepare(request)
            while _has_content(request) and (
                chunk := await loop.run_in_executor(None, video.read, 256 * 1024)
            ):
                await resp.write(chunk)
            await resp.write_eof()
    return resp


def _served_path(state: JobState, settings: Settings) -> Path:
    """The job's video, only if it is a file inside the data folder or the jobs' folder
    (AURA_ARTIFACTS_DIR, when set), symlinks resolved.

    The recorded path is found as an artifact's is (`job_files.located`): relative to the job's
    work folder, or moved with the data folder.
    """
    if state.output is None or not state.output.video_path:
        raise AuraError.of(
            "NotFound", f"job {state.job_id} has no output (it is {state.status.value})"
        )
    roots = (settings.data_dir.resolve(), settings.jobs_dir.resolve())
    path = located(state.output.video_path, settings.job_dir(state.job_id)).resolve()
    if not any(path.is_relative_to(root) for root in roots) or not path.is_file():
        raise AuraError.of("NotFound", f"job {state.job_id}'s output file is not available")
    return path
