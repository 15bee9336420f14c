"""Errors the store raises; nothing above the store sees aiosqlite or sqlite3."""

from __future__ import annotations

import sqlite3

__all__ = [
    "ConcurrencyError",
    "CorruptEvent",
    "DatabaseMissing",
    "LeaseLost",
    "LogUnreadable",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "append_failed",
]


class StoreError(Exception):
    """The log could not be read or written (disk, lock, schema)."""


class StoreFull(StoreError):
    """The log could not grow: the disk (or a quota, or SQLite's page limit) is full."""


class StoreUnavailable(StoreError):
    """The log's database could not be reached (PostgreSQL down, the network cut): the call
    read or wrote nothing, and may succeed once it answers again."""


class LogUnreadable(StoreError):
    """The log's schema is newer than this build's: refused, never written."""


class DatabaseMissing(StoreError):
    """A read-only open found no database file."""


class ConcurrencyError(StoreError):
    """An append expected a job version that is no longer the job's latest (a stale writer)."""

    def __init__(self, job_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"job {job_id}: append expected version {expected} but the log is at {actual}"
        )
        self.job_id = job_id
        self.expected = expected
        self.actual = actual


class LeaseLost(StoreError):
    """An append fenced by a job's lease whose token is no longer the job's (another worker
    claimed it after the lease expired): refused, so the stale worker appends nothing more."""

    def __init__(self, job_id: str, token: int) -> None:
        super().__init__(
            f"job {job_id}: lease {token} was lost to another worker; nothing appended"
        )
        self.job_id = job_id
        self.token = token


class CorruptEvent(StoreError):
    """A stored row that does not decode to a known event; names its seq."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"event seq {seq} cannot be decoded: {reason}")
        self.seq = seq


def append_failed(error: BaseException) -> StoreError:
    """The StoreError of a failed append: StoreFull when SQLite found the disk full."""
    full = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return (StoreFull if full else StoreError)(f"append failed: {error}")
