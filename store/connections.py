"""aiosqlite connections as the store uses them: explicit transactions, one hop per function.

The only module of the store that touches aiosqlite's private API: `on_thread` and
`sqlite_connection` below, each stating what it relies on. tests/integration/test_connections.py
checks those behaviours on the installed aiosqlite (pyproject pins the range they hold for).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from aura.store.errors import StoreError

__all__ = ["connect", "on_thread", "run_with_connection", "sqlite_connection"]

T = TypeVar("T")


async def on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the connection's own thread, in one hop.

    aiosqlite queues one hop per call; a group commit made of BEGIN, a version check,
    executemany and COMMIT would pay four. Relies on `Connection._execute(fn, *args)`
    (private; aiosqlite 0.20 to 0.22, the range pyproject.toml pins): it queues `fn` behind the
    connection's earlier calls, runs it on the connection's thread and returns its result or
    raises its exception, unchanged.
    """
    result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result


def sqlite_connection(conn: aiosqlite.Connection) -> sqlite3.Connection:
    """The sqlite3 connection under `conn`, for functions run by `on_thread` and for group
    commits on the event loop's thread.

    Relies on `Connection._conn` (private; aiosqlite 0.20 to 0.22, the range pyproject.toml
    pins): the very connection aiosqlite's thread runs its calls on. Using it from another
    thread needs `check_same_thread=False` (see `connect`) and nothing else using it meanwhile.
    """
    return conn._conn


async def run_with_connection(
    conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]
) -> T:
    """Run `fn(sqlite3 connection)` on the connection's own thread, in one hop."""
    return await on_thread(conn, fn, sqlite_connection(conn))


async def connect(database: str, *, uri: bool = False) -> aiosqlite.Connection:
    """A connection with explicit transactions and a busy timeout; StoreError if it fails."""
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
    # check_same_thread=False: aiosqlite's thread owns the connection, but on_thread functions
    # and close() may touch it from the loop thread after the worker is done.
    try:
        conn = await aiosqlite.connect(
            database, uri=uri, isolation_level=None, check_same_thread=False
        )
        await conn.execute("PRAGMA busy_timeout = 5000")
    except sqlite3.Error as e:
        raise StoreError(f"cannot open the database {database}: {e}") from e
    return conn
