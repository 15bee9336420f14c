"""What a step receives and returns: the contract between the runner and the steps.

A step is `async def step(ctx: StepContext) -> list[Artifact]`. It reads the job's validated
inputs and earlier steps' artifacts, writes only inside `ctx.work_dir` (through engine/atomic),
reports progress with `await ctx.progress(pct, message, eta_seconds)` and warnings with
`await ctx.warn(code, message)`. Cancellation and timeouts arrive as asyncio cancellation inside
the step (it runs in its job's task, within a timeout scope): the step (and the process helper
it uses) must let CancelledError propagate after stopping its child process and removing its
temp files. The runner's other contract is the output probe (`OutputProbe`): it turns the
finished job's artifacts into its Output.

A run builds each step's context with `step_context`: its callbacks queue their events on the
run's log (`QueueEvents`) without waiting, so they commit at the step's next wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from aura.engine.config.inputs import SAMPLE_BRIEF, Brief, JobRequest, Options
from aura.engine.config.settings import Settings
from aura.engine.run.decide import should_emit_progress
from aura.projections.events import Artifact, Event, JobWarning, Output, StepProgressed
from aura.projections.job import JobState

__all__ = [
    "OutputProbe",
    "ProgressCallback",
    "QueueEvents",
    "Step",
    "StepContext",
    "WarnCallback",
    "step_context",
]

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
    #: the event loop's time at which the step's time limit ends (None: no limit); a step that
    #: would wait past it (a provider's Retry-After) can fail at once instead
    deadline: float | None = None


Step = Callable[[StepContext], Awaitable[list[Artifact]]]

#: turns a finished job's artifacts (by name) into its Output
OutputProbe = Callable[[Mapping[str, Artifact]], Awaitable[Output]]

#: queues events for the job's log without waiting for their commit (a run's ordered queue)
QueueEvents = Callable[[list[Event]], object]


class _Progress:
    """The progress callback of one step: throttled StepProgressed appends."""

    def __init__(self, queue: QueueEvents, step: str, attempt: int) -> None:
        self._queue = queue
        self._step = step
        self._attempt = attempt
        self._pct = 0.0
        self._message = ""
        self._time = asyncio.get_running_loop().time()

    async def __call__(self, pct: float, message: str = "", eta: float | None = None) -> None:
        now = asyncio.get_running_loop().time()
        changed = message != self._message
        if not should_emit_progress(self._pct, self._time, pct, now, changed):
            return
        self._pct, self._message, self._time = pct, message, now
        event = StepProgressed(
            step=self._step,
            attempt=self._attempt,
            pct=round(pct, 2),
            message=message,
            eta_seconds=None if eta is None else round(eta, 1),
        )
        self._queue([event])  # committed at the step's next wait


def step_context(
    state: JobState,
    step: str,
    request: JobRequest,
    *,
    settings: Settings,
    work_dir: Path,
    artifacts: Mapping[str, Artifact],
    queue: QueueEvents,
    deadline: float | None = None,
) -> StepContext:
    """The context `step` of the job in `state` runs with; its progress and warnings are
    queued with `queue`; `deadline`: when its time limit ends (the loop's time)."""
    attempt = state.attempt

    async def warn(code: str, message: str) -> None:
        queue([JobWarning(code=code, message=message, step=step, attempt=attempt)])

    return StepContext(
        job_id=state.job_id,
        step=step,
        attempt=attempt,
        correlation_id=state.correlation_id,
        preset=request.preset,
        brief=request.brief or SAMPLE_BRIEF,
        options=request.options,
        settings=settings,
        work_dir=work_dir,
        artifacts=MappingProxyType(dict(artifacts)),
        progress=_Progress(queue, step, attempt),
        warn=warn,
        deadline=deadline,
    )
