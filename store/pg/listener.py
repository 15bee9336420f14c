"""The LISTEN connection of one PostgreSQL log: kept open, re-established when it drops.

INVARIANTS
- `on_connected` runs after each LISTEN is in place, so whatever committed while no listener was
  there is found by reading the log then (its last seq), and whatever commits later is notified.
- Nothing here polls: a lost connection is noticed by asyncpg's termination callback; only the
  waits between attempts to reconnect are timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from aura.store.errors import StoreError
from aura.store.pg.errors import DB_ERRORS

__all__ = ["RECONNECT_DELAYS", "Listener"]

logger = logging.getLogger(__name__)

#: seconds between attempts to reconnect, the last repeated
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class Listener:
    """Listens on `channel`; `on_notify(payload)` for each notification, `on_connected()` after
    each (re)connection, once LISTEN is in place."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_connected: Callable[[], Awaitable[None]],
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._on_connected = on_connected
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()  # set when the current connection drops
        self._task: asyncio.Task[None] | None = None
        #: connections made so far (1 once started; one more after each drop)
        self.connections = 0
        #: when the connection dropped, until it is made again (None while listening)
        self.down_since: datetime | None = None

    async def start(self) -> None:
        """Connect and listen; returns once the first LISTEN is in place (or raises)."""
        await self._connect()
        # a fresh context: it serves the whole log, so it logs as no request or job
        self._task = asyncio.create_task(
            self._keep_connected(), name="pg listener", context=contextvars.Context()
        )

    @property
    def backend_pid(self) -> int | None:
        """The listening connection's server process (None while reconnecting)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self._channel, self._notified)
            await self._on_connected()
        except BaseException:
            await _close_quietly(conn)
            raise
        self._conn, self._lost = conn, lost
        self.connections += 1
        self.down_since = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)

    async def _keep_connected(self) -> None:
        while True:
            await self._lost.wait()
            self._conn = None
            self.down_since = datetime.now(UTC)
            logger.warning("the log's listening connection dropped; reconnecting")
            attempt = 0
            while True:
                await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
                attempt += 1
                try:
                    await self._connect()
                    break
                except (*DB_ERRORS, StoreError) as e:
                    logger.warning("reconnecting the log's listener: %s", e)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await _close_quietly(self._conn)


async def _close_quietly(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(
        OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError
    ):
        await conn.close(timeout=2)
