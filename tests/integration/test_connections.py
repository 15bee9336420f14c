"""What store/connections.py relies on in aiosqlite's private API, checked on the real aiosqlite.

An aiosqlite release that changes one of these behaviours fails here, before the store breaks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest

from aura.store.connections import connect, on_thread, run_with_connection, sqlite_connection

TIMEOUT = 10.0


async def _thread_of_public_calls(conn: aiosqlite.Connection) -> int:
    """The thread aiosqlite runs its public calls on, as SQL sees it."""
    await conn.create_function("thread_id", 0, threading.get_ident)
    (row,) = await conn.execute_fetchall("SELECT thread_id()")
    return int(row[0])


async def test_on_thread_runs_the_function_on_the_connections_own_thread(
    tmp_path: Path,
) -> None:
    conn = await connect(str(tmp_path / "a.db"))
    try:
        threads = [await on_thread(conn, threading.get_ident) for _ in range(2)]
        assert threads[0] == threads[1] == await _thread_of_public_calls(conn)
        assert threads[0] != threading.get_ident()
        assert await on_thread(conn, lambda a, b: (a, b), 1, "two") == (1, "two")
    finally:
        await conn.close()


async def test_on_thread_runs_in_order_with_the_connections_other_calls(tmp_path: Path) -> None:
    conn = await connect(str(tmp_path / "a.db"))
    entered, release = threading.Event(), threading.Event()

    def hold() -> str:
        entered.set()
        release.wait(TIMEOUT)
        return "held"

    try:
        holding = asyncio.create_task(on_thread(conn, hold))
        await asyncio.to_thread(entered.wait, TIMEOUT)
        behind = asyncio.create_task(conn.execute_fetchall("SELECT 1"))
        for _ in range(50):  # a call not queued behind the function would be done by now
            await asyncio.sleep(0.001)
        assert not behind.done()
        release.set()
        assert await holding == "held"
        assert list(await behind) == [(1,)]
    finally:
        release.set()
        await conn.close()


async def test_on_thread_raises_the_functions_own_exception(tmp_path: Path) -> None:
    conn = await connect(str(tmp_path / "a.db"))

    def fails(raw: sqlite3.Connection) -> None:
        raw.execute("SELECT * FROM no_such_table")

    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await run_with_connection(conn, fails)
        with pytest.raises(sqlite3.IntegrityError):  # the store tells this one apart
            await on_thread(conn, _raise_integrity_error)
    finally:
        await conn.close()


def _raise_integrity_error() -> None:
    raise sqlite3.IntegrityError("UNIQUE constraint failed")


async def test_sqlite_connection_is_the_one_aiosqlite_uses(tmp_path: Path) -> None:
    conn = await connect(str(tmp_path / "a.db"))
    try:
        raw = sqlite_connection(conn)
        assert isinstance(raw, sqlite3.Connection)
        # from the event loop's thread, as a group commit at NORMAL durability uses it
        raw.execute("CREATE TEMP TABLE mine (x)")  # a temp table is seen by its connection only
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO mine VALUES (1)")
        assert conn.in_transaction
        raw.execute("COMMIT")
        assert list(await conn.execute_fetchall("SELECT x FROM temp.mine")) == [(1,)]
        assert await run_with_connection(conn, lambda c: c is raw)
    finally:
        await conn.close()
