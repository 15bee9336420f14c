"""PostgreSQL for the benchmarks: a database of the run's own on the server, created at the
start and dropped at the end, with one schema per log in it.

The server is AURA_BENCH_DATABASE_URL's (its maintenance database), else 127.0.0.1:5432 as
user postgres, as the test machines run it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg

__all__ = [
    "PG_ERRORS",
    "SERVER_URL",
    "bench_database",
    "create_database",
    "drop_database",
    "new_schema",
    "server_shown",
]

#: the maintenance database of the server the benchmarks use
SERVER_URL = os.environ.get(
    "AURA_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: what an unreachable or failing server raises
PG_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def server_shown() -> str:
    """The server's host and port, for messages (never the URL's password)."""
    parts = urlsplit(SERVER_URL)
    return f"{parts.hostname}:{parts.port or 5432}"


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.partition("?")[0].rpartition("/")
    return f"{base}/{name}"


async def create_database(prefix: str) -> tuple[str, str]:
    """A new database on the server (`<prefix>_<random>`): its name and URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(SERVER_URL, timeout=10)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return name, _with_database(SERVER_URL, name)


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(SERVER_URL, timeout=10)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@asynccontextmanager
async def bench_database(prefix: str) -> AsyncIterator[str]:
    """A new database on the server (`<prefix>_<random>`), dropped on exit; its URL."""
    name, url = await create_database(prefix)
    try:
        yield url
    finally:
        await drop_database(name)


async def new_schema(database_url: str, name: str) -> str:
    """A new empty schema in the database; the URL whose connections use it."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    return f"{database_url}?search_path={name}"
