"""Fixtures of the HTTP tests: a real server (pytest-aiohttp) over a real engine and SQLite log.

The modules marked `both_backends` run each test twice, on SQLite and on PostgreSQL (the log
in a schema of its own of the test run's database, tests/pg_support.py), but for the tests
marked `sqlite_only` (they reach into SQLite's file).

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
from aura.tests.pg_support import new_schema_url_now

BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker
    if marked("both_backends") and not marked("sqlite_only") and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Where the test's log is: "sqlite" (the data folder's aura.db) unless parametrized."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """The test's PostgreSQL log (an empty schema of its own), None on SQLite."""
    if backend == "sqlite":
        return None
    return new_schema_url_now(request.getfixturevalue("pg_database"))


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=tmp_path / "data", kill_grace_seconds=1.0, database_url=database_url)


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
