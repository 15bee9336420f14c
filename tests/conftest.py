"""Shared fixtures: a real SQLite event log in a temporary data folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aura.store import EventLog


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EventLog]:
    event_log = await EventLog.open(tmp_path / "data")
    yield event_log
    await event_log.close()
