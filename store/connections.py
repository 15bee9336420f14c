"""aiosqlite connections as the store uses them: explicit transactions, one hop per function."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from aura.store.errors import StoreError

__all__ = ["connect", "on_thread"]

T = TypeVar("T")


async def on_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on the connection's own thread, in one hop.

    aiosqlite queues one hop per call (about 45-50 us each); a group commit made of BEGIN, a
    version check, executemany and COMMIT would pay four. Its `_execute` (private, present in
    every release this project allows: see pyproject) runs a whole function there instead.
    """
    result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result


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
