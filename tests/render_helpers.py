"""Helpers of the render tests: a StepContext built by hand, and the steps run in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aura.engine.config.inputs import Brief, Options
from aura.engine.config.settings import Settings
from aura.engine.files.atomic import TEMP_MARKER
from aura.engine.run.context import StepContext
from aura.engine.run.pipeline import PIPELINE
from aura.projections.events import Artifact

#: a short brief that renders in about a second at draft quality
SHORT_BRIEF = Brief(title="Test: 100% 'quoted'", script=("One short line.", "And another."))
DRAFT = Options(quality="draft", encoder="x264")


@dataclass
class Recorder:
    """Collects what a step reports: progress ticks and warnings."""

    progress: list[tuple[str, float, str, float | None]] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with a data folder under `tmp_path`, no environment influence."""
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "kill_grace_seconds": 1.0}
    values.update(overrides)
    return Settings(**values)


def make_ctx(
    settings: Settings,
    step: str,
    *,
    brief: Brief = SHORT_BRIEF,
    options: Options = DRAFT,
    artifacts: dict[str, Artifact] | None = None,
    recorder: Recorder | None = None,
    job_id: str = "job-1",
) -> StepContext:
    """A StepContext as the runner would build it, recording progress and warnings."""
    rec = recorder if recorder is not None else Recorder()

    async def progress(pct: float, message: str, eta: float | None) -> None:
        rec.progress.append((step, pct, message, eta))

    async def warn(code: str, message: str) -> None:
        rec.warnings.append((step, code, message))

    work_dir = settings.job_dir(job_id)
    return StepContext(
        job_id=job_id,
        step=step,
        attempt=1,
        correlation_id="corr-1",
        preset="default",
        brief=brief,
        options=options,
        settings=settings,
        work_dir=work_dir,
        artifacts=dict(artifacts or {}),
        progress=progress,
        warn=warn,
    )


async def run_steps(
    settings: Settings,
    *,
    brief: Brief = SHORT_BRIEF,
    options: Options = DRAFT,
    recorder: Recorder | None = None,
    until: str = "mux",
) -> dict[str, Artifact]:
    """Run the pipeline's steps in order, as the runner does, up to and including `until`."""
    artifacts: dict[str, Artifact] = {}
    for name, step in PIPELINE.items():
        ctx = make_ctx(
            settings, name, brief=brief, options=options, artifacts=artifacts, recorder=recorder
        )
        for artifact in await step(ctx):
            artifacts[artifact.name] = artifact
        if name == until:
            break
    return artifacts


def leftovers(folder: Path) -> list[Path]:
    """Temp files and zero-byte files under `folder`: none may survive any failure."""
    if not folder.exists():
        return []
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and (TEMP_MARKER in p.name or p.stat().st_size == 0)
    ]


def listing(folder: Path) -> list[str]:
    """The names in `folder`, sorted (sync, so async tests stay free of blocking-call lint)."""
    return sorted(p.name for p in folder.iterdir())


def file_size(path: Path | str) -> int:
    return Path(path).stat().st_size


def read_text(path: Path | str) -> str:
    return Path(path).read_text()
