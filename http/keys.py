"""The app's typed state: its configuration and the keys its parts are stored under.

Their own module, imported at the top by the app factory and the route modules alike, so no
import needs to wait inside a function for the other side to exist.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

from aiohttp import web

from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.http.fanout import FanOut
from aura.http.sse import EventStream, StreamConfig
from aura.http.sse_jobs import JobListFeed

__all__ = [
    "CONFIG",
    "ENGINE",
    "FANOUT",
    "JOB_LIST_FEED",
    "MAX_BODY_BYTES",
    "STREAMS",
    "HttpConfig",
]

#: request bodies larger than this are refused with 413 (a job request is a few KiB)
MAX_BODY_BYTES = 256 * 1024


class HttpConfig(NamedTuple):
    #: the settings the server started with; the engine's `settings` are those in effect (with
    #: the provider settings saved from the page over them)
    settings: Settings
    #: the access token (AURA_TOKEN) or None; never written to a response or a log
    token: str | None = None
    stream: StreamConfig = StreamConfig()
    max_body_bytes: int = MAX_BODY_BYTES


CONFIG = web.AppKey("config", HttpConfig)
ENGINE = web.AppKey("engine", Engine)
FANOUT = web.AppKey("fanout", FanOut)
#: the job list's row changes (GET /api/events)
JOB_LIST_FEED = web.AppKey("job_list_feed", JobListFeed)
STREAMS = web.AppKey("streams", weakref.WeakSet[EventStream])
