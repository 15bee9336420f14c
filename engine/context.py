"""What a step receives and returns: the contract between the runner and the steps.

A step is `async def step(ctx: StepContext) -> list[Artifact]`. It reads the job's validated
inputs and earlier steps' artifacts, writes only inside `ctx.work_dir` (through engine/atomic),
reports progress with `await ctx.progress(pct, message, eta_seconds)` and warnings with
`await ctx.warn(code, message)`. Cancellation and timeouts arrive as asyncio cancellation inside
the step (it runs in its job's task, within a timeout scope): the step (and the process helper
it uses) must let CancelledError propagate after stopping its child process and removing its
temp files.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aura.engine.inputs import Brief, Options
from aura.engine.settings import Settings
from aura.projections.events import Artifact

__all__ = ["ProgressCallback", "Step", "StepContext", "WarnCallback"]

#: (percent 0-100, message, eta in seconds or None)
ProgressCallback = Callable[[float, str, float | None], Awaitable[None]]
#: (code, message)
WarnCallback = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class StepContext:
    job_id: str
    step: str
    attempt: int
    correlation_id: str
    preset: str
    brief: Brief
    options: Options
    settings: Settings
    #: the job's own folder (data_dir/jobs/<job_id>); steps write nothing outside it
    work_dir: Path
    #: artifacts of the steps before this one, by artifact name
    artifacts: Mapping[str, Artifact]
    progress: ProgressCallback
    warn: WarnCallback


Step = Callable[[StepContext], Awaitable[list[Artifact]]]
