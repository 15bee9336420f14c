"""The append-only event log (SQLite via aiosqlite) and the read models derived from it."""

from aura.store.errors import (
    ConcurrencyError,
    CorruptEvent,
    DatabaseMissing,
    StoreError,
    StoreFull,
)
from aura.store.log import DB_FILE_NAME, Durability, EventLog, QueuedAppend

__all__ = [
    "DB_FILE_NAME",
    "ConcurrencyError",
    "CorruptEvent",
    "DatabaseMissing",
    "Durability",
    "EventLog",
    "QueuedAppend",
    "StoreError",
    "StoreFull",
]
