"""The append-only event log (SQLite via aiosqlite) and the read models derived from it."""

from aura.store.errors import (
    ConcurrencyError,
    CorruptEvent,
    DatabaseMissing,
    StoreError,
    StoreFull,
)
from aura.store.log import Durability, EventLog

__all__ = [
    "ConcurrencyError",
    "CorruptEvent",
    "DatabaseMissing",
    "Durability",
    "EventLog",
    "StoreError",
    "StoreFull",
]
