"""One engine per data folder: a folder in use is a one-line error; an unreadable row is named."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from runner_support import pipeline, settings_for

from aura.engine.config.inputs import JobRequest
from aura.engine.engine import Engine
from aura.engine.files.folder_lock import FolderInUse


async def test_a_second_engine_on_the_same_folder_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    first = await Engine.open(settings, pipeline=pipeline())
    try:
        with pytest.raises(FolderInUse, match="in use by another Aura process"):
            await Engine.open(settings, pipeline=pipeline())
    finally:
        await first.close()
    second = await Engine.open(settings, pipeline=pipeline())
    await second.close()


async def aura(*args: str) -> tuple[int, str]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aura.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode is not None
    return child.returncode, err.decode()


async def test_aura_serve_on_a_folder_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with await Engine.open(settings, pipeline=pipeline()):
        code, err = await aura("serve", "--data-dir", str(settings.data_dir), "--port", "0")
    assert code == 1
    assert err.strip().count("\n") == 0 and "in use by another Aura process" in err


async def test_aura_serve_on_a_log_with_a_row_it_cannot_read_starts_and_names_it(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path)
    async with await Engine.open(settings, pipeline=pipeline()) as engine:
        await engine.submit(JobRequest())
        await engine.run_until_idle()
        last = await engine.log.max_seq()
    with sqlite3.connect(settings.data_dir / "aura.db") as conn:  # a newer build's event type
        conn.execute(
            "INSERT INTO events VALUES (?, 'other', 1, 'JobArchived', NULL, 1, "
            "'2026-01-01T00:00:00.000000Z', '{\"type\":\"JobArchived\"}')",
            (last + 1,),
        )
        conn.execute("DELETE FROM projector_positions")  # the job list is rebuilt at start
        conn.execute("DELETE FROM jobs")
    # it starts all the same (the other jobs must not pay for one row), naming the row
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aura.cli.main", "serve", "--data-dir", str(settings.data_dir),
        "--port", "0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    async with asyncio.timeout(60):
        assert "listening on" in (await child.stdout.readline()).decode()
    child.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err
    assert f"seq {last + 1} cannot be decoded" in err.decode()
    assert "Traceback" not in err.decode()
