"""What asyncpg raises, turned into the store's errors (store/errors.py), so that nothing above
the store sees asyncpg: a database that cannot be reached is StoreUnavailable, which a client
may retry; anything else is a StoreError. And asyncpg's pool, which logs a traceback each time
it fails to reconnect (every few seconds while the database is down), logs one line."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import asyncpg

from aura.store.errors import StoreError, StoreUnavailable

__all__ = ["CONNECTION_ERRORS", "DB_ERRORS", "store_error", "translated"]

P = ParamSpec("P")
T = TypeVar("T")

#: errors of a connection that could not be made or broke, not of the statement sent on it
CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the server shutting down, a backend killed
    asyncpg.InternalClientError,  # "another operation is in progress" on a broken one
)
#: every error a call to the database may raise
DB_ERRORS = (*CONNECTION_ERRORS, asyncpg.PostgresError)


def store_error(error: BaseException, doing: str) -> StoreError:
    """The store's error for a database call that raised `error` while `doing` (e.g. "read
    failed"): StoreUnavailable when the database could not be reached."""
    kind = StoreUnavailable if isinstance(error, CONNECTION_ERRORS) else StoreError
    return kind(f"{doing}: {str(error) or type(error).__name__}")  # a timeout says nothing


CoroutineFunction = Callable[P, Coroutine[Any, Any, T]]


def translated(doing: str) -> Callable[[CoroutineFunction[P, T]], CoroutineFunction[P, T]]:
    """Decorate a coroutine function whose database errors become `store_error(e, doing)`."""

    def decorate(call: CoroutineFunction[P, T]) -> CoroutineFunction[P, T]:
        @functools.wraps(call)
        async def translating(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await call(*args, **kwargs)
            except DB_ERRORS as e:
                raise store_error(e, doing) from e

        return translating

    return decorate


class _OneLine(logging.Filter):
    """A record's exception as one line of its message, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())
