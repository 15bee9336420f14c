"""Shared fixtures: a real SQLite event log in a temporary data folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aura.store import Durability, EventLog


@pytest.fixture(params=[Durability.NORMAL, Durability.FULL], ids=["normal", "full"])
async def log(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
    """Each test runs on both write paths: NORMAL commits on the event loop's thread, FULL on
    the writer connection's thread."""
    event_log = await EventLog.open(tmp_path / "data", durability=request.param)
    yield event_log
    await event_log.close()
