"""Shared fixtures: a real event log, SQLite in a temporary data folder or PostgreSQL in a
schema of its own (tests/pg_support.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aura.store import Durability, EventLog
from aura.store.interface import EventStore
from aura.store.pg.log import PgEventLog
from aura.tests.pg_support import (
    create_test_database,
    drop_test_database,
    find_server,
    new_schema_url,
)

#: opens the test's log (the same one each call, on the test's backend); readonly: as `open` has
OpenLog = Callable[..., Awaitable[EventStore]]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This test run's own PostgreSQL database, dropped at the end (on a throwaway cluster
    when no server answers: tests/pg_support.py)."""
    # on a thread of its own: first requested from inside a test's running event loop
    with ThreadPoolExecutor(1) as thread:
        server_url, cluster = thread.submit(asyncio.run, find_server()).result()
        try:
            url = thread.submit(asyncio.run, create_test_database(server_url)).result()
            yield url
            thread.submit(asyncio.run, drop_test_database(url)).result()
        finally:
            if cluster is not None:
                cluster.stop()


@pytest.fixture
async def pg_url(pg_database: str) -> str:
    """A PostgreSQL URL whose log is the test's own (an empty schema)."""
    return await new_schema_url(pg_database)


@pytest.fixture(params=["sqlite", "postgres"])
async def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenLog]:
    """Opens the test's log on each backend; what it opened is closed at the end."""
    opened: list[EventStore] = []
    if request.param == "postgres":
        location = await new_schema_url(request.getfixturevalue("pg_database"))

        async def open_pg(readonly: bool = False) -> EventStore:
            log = await PgEventLog.open(location, readonly=readonly)
            opened.append(log)
            return log

        yield open_pg
    else:

        async def open_sqlite(readonly: bool = False) -> EventStore:
            log = await EventLog.open(tmp_path, readonly=readonly)
            opened.append(log)
            return log

        yield open_sqlite
    for log in opened:
        await log.close()


@pytest.fixture(params=[Durability.NORMAL, Durability.FULL, "postgres"], ids=str.lower)
async def log(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    """Each test runs on both backends, and on SQLite's two write paths: NORMAL commits on the
    event loop's thread, FULL on the writer connection's thread."""
    if request.param == "postgres":
        event_log: EventStore = await PgEventLog.open(
            await new_schema_url(request.getfixturevalue("pg_database"))
        )
    else:
        event_log = await EventLog.open(tmp_path / "data", durability=request.param)
    yield event_log
    await event_log.close()


@pytest.fixture(params=[Durability.NORMAL, Durability.FULL], ids=["normal", "full"])
async def sqlite_log(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
    """SQLite's own behaviours (its file, its writer connection), on both write paths."""
    event_log = await EventLog.open(tmp_path / "data", durability=request.param)
    yield event_log
    await event_log.close()
