"""The aiohttp application factory: one app owns the engine (store, runner, recovery) and streams.

`create_app(settings)` returns an app whose start-up opens the engine (which recovers the jobs
the log shows as running) and whose clean-up closes it; open SSE streams are stopped on
shutdown. State lives in typed `web.AppKey`s (http/keys.py).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.run.context import Step
from aura.http.access_log import access_log_middleware, remember_status
from aura.http.fanout import FanOut
from aura.http.keys import (
    CONFIG,
    ENGINE,
    FANOUT,
    JOB_LIST_FEED,
    MAX_BODY_BYTES,
    STREAMS,
    HttpConfig,
)
from aura.http.metrics import METRICS, Metrics
from aura.http.metrics import routes as metrics_routes
from aura.http.problems import add_correlation_header, problem_middleware
from aura.http.routes_jobs import routes as job_routes
from aura.http.routes_page import add_page_routes
from aura.http.routes_settings import routes as settings_routes
from aura.http.routes_system import routes as system_routes
from aura.http.security import make_auth_middleware, make_guard_middleware
from aura.http.sse import StreamConfig, stop_streams
from aura.http.sse_jobs import JobListFeed

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    token: str | None = None,
    pipeline: Mapping[str, Step] | None = None,
    stream: StreamConfig | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> web.Application:
    """The Aura HTTP app. `pipeline` replaces the default steps (tests use tiny real ones)."""
    app = web.Application(
        middlewares=[
            access_log_middleware,
            problem_middleware,
            make_guard_middleware(token),
            make_auth_middleware(token),
        ],
        client_max_size=max_body_bytes,
    )
    app[CONFIG] = HttpConfig(settings, token, stream or StreamConfig(), max_body_bytes)
    app[STREAMS] = weakref.WeakSet()
    app.add_routes(job_routes)
    app.add_routes(system_routes)
    app.add_routes(settings_routes)
    app.add_routes(metrics_routes)  # GET /metrics, behind the token like the API
    add_page_routes(app)  # the web page: GET / and /static/{name}, no token needed

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        engine = await Engine.open(settings, pipeline=pipeline)
        app[ENGINE] = engine
        app[FANOUT] = FanOut(engine.log, app[CONFIG].stream.ping_interval)
        app[JOB_LIST_FEED] = JobListFeed(
            engine.log, engine.projector.table, app[CONFIG].stream.ping_interval
        )
        app[METRICS] = Metrics(engine, app[FANOUT], app[JOB_LIST_FEED])
        yield
        app[METRICS].close()
        app[FANOUT].close()
        app[JOB_LIST_FEED].close()
        await engine.close()

    async def on_shutdown(app: web.Application) -> None:
        stop_streams(app[STREAMS])

    app.cleanup_ctx.append(engine_ctx)
    app.on_shutdown.append(on_shutdown)
    app.on_response_prepare.append(add_correlation_header)
    app.on_response_prepare.append(remember_status)
    return app
