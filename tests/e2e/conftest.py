"""Fixtures of the HTTP tests: a real server (pytest-aiohttp) over a real engine and SQLite log.

The fast tests run the engine with a tiny real pipeline (steps that report progress, write a
small file, and can be held at a gate or made to fail on a given attempt); the render tests run
the default pipeline with real ffmpeg.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aura.engine.config.settings import Settings
from aura.http.app import create_app
from aura.http.sse import StreamConfig
from aura.tests.e2e.helpers import TinyPipeline


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", kill_grace_seconds=1.0)


@pytest.fixture
def tiny() -> TinyPipeline:
    return TinyPipeline()


AppFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def make_client(aiohttp_client: Any, settings: Settings, tiny: TinyPipeline) -> AppFactory:
    """`await make_client(**create_app kwargs)`: a client of a real server on 127.0.0.1."""

    async def make(**kwargs: Any) -> TestClient[web.Request, web.Application]:
        kwargs.setdefault("pipeline", tiny.steps())
        kwargs.setdefault("stream", StreamConfig(ping_interval=15.0, retry_ms=500))
        client: TestClient[web.Request, web.Application] = await aiohttp_client(
            create_app(kwargs.pop("settings", settings), **kwargs)
        )
        return client

    return make


@pytest.fixture
async def client(make_client: AppFactory) -> TestClient[web.Request, web.Application]:
    return await make_client()
