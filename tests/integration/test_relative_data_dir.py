"""A relative data folder (`make run` uses ./data) renders like an absolute one."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_helpers import DRAFT, SHORT_BRIEF, file_size

from aura.engine.config.inputs import JobRequest
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.projections.job import JobStatus


def test_settings_make_the_data_folder_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(data_dir=Path("data")).data_dir == tmp_path / "data"
    assert Settings.from_env(data_dir="./data").job_dir("j") == tmp_path / "data" / "jobs" / "j"


async def test_a_job_renders_with_a_relative_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("./data"), kill_grace_seconds=1.0)
    async with await Engine.open(settings) as engine:
        submitted = await engine.submit(
            JobRequest(preset="default", brief=SHORT_BRIEF, options=DRAFT)
        )
        await engine.run_until_idle()
        state = await engine.get(submitted.job.job_id)
    assert state.status is JobStatus.SUCCEEDED, state.errors
    assert state.output is not None
    video = Path(state.output.video_path)
    assert video.is_absolute() and video.is_relative_to(tmp_path / "data")
    assert file_size(video) == state.output.size_bytes
