"""The store's interface: what the engine asks of a log, whichever database holds it.

`EventLog` (SQLite, store/log.py) and `PgEventLog` (PostgreSQL, store/pg/log.py) both satisfy
`EventStore`; `open_event_store` picks one from the settings. Their job lists (`JobsTable`,
`PgJobsTable`) both satisfy `JobList`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from aura.projections.events import Event, Recorded
from aura.projections.job import JobStatus
from aura.store.batch import QueuedAppend
from aura.store.group_commit import CommitObserver
from aura.store.jobs_table import JobPage, ListPosition
from aura.store.log import Durability, EventLog
from aura.store.pg.log import PgEventLog
from aura.store.subscriptions import Watcher

__all__ = [
    "DATABASE_URL_SCHEMES",
    "EventStore",
    "JobList",
    "is_database_url",
    "open_event_store",
]

#: the URL schemes AURA_DATABASE_URL / --database-url take (PostgreSQL)
DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")


class EventStore(Protocol):
    """An append-only job log: appends at an expected version, reads, subscriptions."""

    commit_observer: CommitObserver | None

    @property
    def closing(self) -> bool: ...

    @property
    def unreachable_since(self) -> datetime | None:
        """When the log's database stopped answering (PostgreSQL: its listening connection
        dropped and cannot be made again); None while it answers, and always for SQLite."""
        ...

    @property
    def last_seq(self) -> int: ...

    @property
    def subscriber_count(self) -> int: ...

    def append(
        self, job_id: str, events: Sequence[Event], expected_version: int
    ) -> asyncio.Future[list[Recorded]]: ...

    def append_nowait(
        self,
        job_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        after: QueuedAppend | None = None,
    ) -> QueuedAppend: ...

    async def read(self, job_id: str, after_version: int = 0) -> list[Recorded]: ...

    async def read_job_after_seq(
        self, job_id: str, after_seq: int, limit: int = ...
    ) -> list[Recorded]: ...

    async def tail(self, after_seq: int = 0, limit: int = ...) -> list[Recorded]: ...

    async def max_seq(self) -> int: ...

    def subscribe(
        self, after_seq: int = 0, job_id: str | None = None
    ) -> AsyncGenerator[Recorded, None]: ...

    def watch(self, job_id: str, watcher: Watcher) -> int: ...

    def unwatch(self, job_id: str, watcher: Watcher) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> EventStore: ...

    async def __aexit__(self, *exc: object) -> None: ...


class JobList(Protocol):
    """The `jobs` read model as the engine and the HTTP layer read it (the list's pages, its
    counts, the recent steps' durations, the row-changing events of the list's stream)."""

    async def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        after: ListPosition | None = None,
    ) -> JobPage: ...

    async def count(self, status: JobStatus | None = None) -> int: ...

    async def active_job_ids(self) -> list[str]: ...

    async def row_events_after(self, after_seq: int, limit: int) -> list[Recorded]: ...

    async def recent_step_durations(self, preset: str, jobs: int) -> list[tuple[str, float]]: ...


def is_database_url(location: str | None) -> bool:
    """`location` names a PostgreSQL database (else the log is SQLite in the data folder)."""
    return location is not None and location.startswith(DATABASE_URL_SCHEMES)


async def open_event_store(
    data_dir: Path,
    database_url: str | None = None,
    *,
    durability: Durability = Durability.NORMAL,
    readonly: bool = False,
) -> EventStore:
    """The log in the PostgreSQL database `database_url` names, else `<data_dir>/aura.db`."""
    if database_url:
        if not is_database_url(database_url):
            raise ValueError("a database URL starts with postgresql://")
        return await PgEventLog.open(database_url, readonly=readonly)
    return await EventLog.open(data_dir, durability=durability, readonly=readonly)
