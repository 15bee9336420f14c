"""One run of a job: from JobStarted through each step to its terminal event, all recorded.

INVARIANTS
- A job is executed by at most one JobRun in this process (`Runner._running`). A JobRun appends
  with expected_version taken from its own folded state, so when anything else writes the job
  its next append raises ConcurrencyError and it stops instead of interleaving.
- Every append of a JobRun goes through `_append_locked`: under its lock, checked against the
  fold first (nothing invalid reaches the log). Appends a step makes (progress, warnings: the
  step may be cancelled meanwhile and the run goes on), cancel requests and terminal events are
  shielded, so a cancelled caller never loses the fold of an event that was committed. The
  run's step transitions are not: they are made outside any step, where the run's task is
  cancelled only to stop the run, after which it appends nothing, so a lost fold cannot matter,
  and a shield costs a task and two loop turns per step.
- A step runs in the run's own task inside a timeout scope (`asyncio.timeout`): its deadline,
  or a cancel request expiring it at once, cancels the step alone; the run then records
  StepTimeout or StepCanceled.
- A run cancelled from outside (the runner stops) stops its step first (its process group is
  killed by the step's process helper) and appends nothing more: the log keeps saying Running,
  and the next start's recovery appends JobInterrupted and resumes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from msgspec.structs import replace

from aura.engine.context import StepContext
from aura.engine.decide import (
    artifacts_changed,
    check_events,
    decide_cancel,
    decide_reuse,
    request_of,
    reuse_candidates,
    should_emit_progress,
)
from aura.engine.error_mapping import map_exception
from aura.engine.errors import make_error
from aura.engine.inputs import SAMPLE_BRIEF, JobRequest
from aura.engine.job_files import remove_temp_files, verify_artifacts
from aura.engine.settings import Settings
from aura.projections.events import (
    Artifact,
    ErrorInfo,
    Event,
    JobCanceled,
    JobCreated,
    JobFailed,
    JobStarted,
    JobSucceeded,
    JobWarning,
    Output,
    Recorded,
    StepCanceled,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobState, JobStatus, fold
from aura.store.errors import ConcurrencyError

if TYPE_CHECKING:
    from aura.engine.runner import Runner

__all__ = ["JobRun", "OutputProbe", "map_step_error"]

logger = logging.getLogger(__name__)

#: the longest the finished video's probe (ffprobe, sha256) may take
OUTPUT_PROBE_SECONDS = 120.0

#: turns a finished job's artifacts (by name) into its Output
OutputProbe = Callable[[Mapping[str, Artifact]], Awaitable[Output]]


def map_step_error(
    exc: BaseException, step: str | None, correlation_id: str, settings: Settings | None = None
) -> ErrorInfo:
    """The taxonomy error for an exception a step raised, with its step and correlation id
    (secrets redacted)."""
    info = map_exception(exc, step=step, correlation_id=correlation_id, settings=settings)
    return replace(info, step=step, correlation_id=correlation_id)


class _Progress:
    """The progress callback of one step: throttled StepProgressed appends."""

    def __init__(self, run: JobRun, step: str) -> None:
        self._run = run
        self._step = step
        self._pct = 0.0
        self._message = ""
        self._time = asyncio.get_running_loop().time()

    async def __call__(self, pct: float, message: str = "", eta: float | None = None) -> None:
        now = asyncio.get_running_loop().time()
        changed = message != self._message
        if not should_emit_progress(self._pct, self._time, pct, now, changed):
            return
        self._pct, self._message, self._time = pct, message, now
        state = self._run.state
        event = StepProgressed(
            step=self._step,
            attempt=state.attempt,
            pct=round(pct, 2),
            message=message,
            eta_seconds=None if eta is None else round(eta, 1),
        )
        await self._run.append([event])


class JobRun:
    """One execution of a queued job: from JobStarted to its terminal event (or a stop)."""

    def __init__(self, runner: Runner, job_id: str, log: list[Recorded] | None = None) -> None:
        self.job_id = job_id
        self._handed_log = log  # the job's events, when the enqueuer had them (see Runner)
        self._runner = runner
        self._log = runner.log
        self._settings = runner.settings
        self._lock = asyncio.Lock()
        self._loaded = asyncio.Event()
        self._step_scope: asyncio.Timeout | None = None  # while a step runs
        self._step_cancelled = False  # its scope was expired by a cancel request
        self._state: JobState | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def state(self) -> JobState:
        assert self._state is not None, "the run has not loaded its job"
        return self._state

    @property
    def work_dir(self) -> str:
        return str(self._settings.job_dir(self.job_id))

    # ---- appending ----------------------------------------------------------------------

    async def append(self, events: list[Event]) -> JobState:
        """Append after the run's own version; shielded so the fold is never lost."""
        return await asyncio.shield(self._append_now(events))

    async def _append_now(self, events: list[Event]) -> JobState:
        async with self._lock:
            return await self._append_locked(events)

    async def _append_locked(self, events: list[Event]) -> JobState:
        state = self.state
        if not events:
            return state
        check_events(state, events)
        records = await self._log.append(self.job_id, events, state.version)
        new = fold(records, state)
        assert new is not None
        self._state = new
        return new

    # ---- cancel -------------------------------------------------------------------------

    async def request_cancel(self) -> JobState | None:
        """Record the cancel request and stop the running step. None: this run does not own the
        job (it was not queued when the run looked, or the run has stopped); Conflict when the
        job already ended."""
        await self._loaded.wait()
        if self._state is None:
            return None
        # Shielded as a whole: once the request is in the log, the fold must follow it and the
        # step must be stopped, even if the caller (an HTTP request) goes away meanwhile.
        return await asyncio.shield(self._cancel_now())

    async def _cancel_now(self) -> JobState | None:
        async with self._lock:
            if self.task is not None and self.task.done():
                return None  # stopped: its fold may lag the log (a stop can cut an append short)
            state = await self._append_locked(decide_cancel(self.state, owned=True))
        scope = self._step_scope
        if scope is not None and not scope.expired():
            self._step_cancelled = True
            scope.reschedule(asyncio.get_running_loop().time())  # expires at once
        return state

    def finished(self) -> None:
        """The run's task is done (maybe cancelled before it ever ran): nobody waits on it."""
        self._loaded.set()

    # ---- executing ----------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            await self._execute()
        except ConcurrencyError as e:
            logger.warning("job %s was written by someone else; this run stops: %s", self.job_id, e)
        except Exception as e:  # a bug or a store failure: fail the job if the log still takes it
            logger.exception("job %s: run failed", self.job_id)
            await self._fail(e)
        finally:
            self._loaded.set()

    async def _execute(self) -> None:
        records, self._handed_log = self._handed_log, None
        if records is None:
            records = await self._log.read(self.job_id)
        state = fold(records)
        if state is None or state.status is not JobStatus.QUEUED:
            return  # canceled, finished or taken by someone else since it was queued
        created = records[0].event
        assert isinstance(created, JobCreated)
        self._state = state
        self._loaded.set()
        if state.cancel_requested:
            await self.append([JobCanceled(attempt=state.attempt)])
            return
        request = request_of(created)
        self._settings.job_dir(self.job_id).mkdir(parents=True, exist_ok=True)
        final = await self._steps(records, request)
        await self.append(final)

    async def _fail(self, exc: BaseException) -> None:
        state = self._state
        if state is None or state.is_terminal:
            return
        error = map_step_error(exc, None, state.correlation_id, self._settings)
        with contextlib.suppress(Exception):
            await self.append([JobFailed(error=error, attempt=state.attempt)])

    async def _steps(self, records: list[Recorded], request: JobRequest) -> list[Event]:
        """Run or reuse each step in order; returns the job's terminal events.

        Events decided without waiting on anything (JobStarted, StepSucceeded, StepSkipped)
        are carried into the next append, so each step costs one commit: a step's StepStarted
        is always committed before it runs, and the carry is committed on its own before any
        slow check (artifact verification, the output probe).
        """
        candidates = reuse_candidates(records)
        artifacts: dict[str, Artifact] = {}
        carry: list[Event] = [JobStarted(attempt=self.state.attempt)]
        upstream_changed = False
        for step in self.state.steps:
            if self.state.cancel_requested:
                return [*carry, JobCanceled(attempt=self.state.attempt)]
            candidate = None if upstream_changed else candidates.get(step.name)
            if candidate is not None:
                carry = await self._flush(carry)
            verified = candidate is not None and await verify_artifacts(
                candidate.artifacts, self.work_dir
            )
            skipped = decide_reuse(
                step.name,
                candidate,
                verified=verified,
                upstream_changed=upstream_changed,
                attempt=self.state.attempt,
            )
            if skipped is not None and candidate is not None:
                carry.append(skipped)
                artifacts.update((a.name, a) for a in candidate.artifacts)
                continue
            outcome = await self._run_step(step.name, request, artifacts, carry)
            succeeded = outcome[0]
            if not isinstance(succeeded, StepSucceeded):
                return outcome
            carry = outcome
            upstream_changed = upstream_changed or artifacts_changed(candidate, succeeded.artifacts)
            artifacts.update((a.name, a) for a in succeeded.artifacts)
        await self._flush(carry)
        try:
            async with asyncio.timeout(OUTPUT_PROBE_SECONDS):
                output = await self._runner.output_probe(artifacts)
        except TimeoutError:
            last = self.state.steps[-1].name
            error = make_error(
                f"StepTimeout:{last}",
                f"probing the finished video took longer than {OUTPUT_PROBE_SECONDS:g} s",
                details={"limitSeconds": OUTPUT_PROBE_SECONDS},
            )
            error = replace(error, step=last, correlation_id=self.state.correlation_id)
            return [JobFailed(error=error, attempt=self.state.attempt)]
        return [JobSucceeded(output=output, attempt=self.state.attempt)]

    async def _flush(self, carry: list[Event]) -> list[Event]:
        await self._append_now(carry)
        return []

    async def _run_step(
        self,
        name: str,
        request: JobRequest,
        artifacts: Mapping[str, Artifact],
        carry: list[Event],
    ) -> list[Event]:
        """Run one step to its outcome: [StepSucceeded], or the job's terminal events."""
        attempt = self.state.attempt
        await self._append_now([*carry, StepStarted(step=name, attempt=attempt)])
        if self.state.cancel_requested:
            return [StepCanceled(step=name, attempt=attempt), JobCanceled(attempt=attempt)]
        step = self._runner.pipeline.get(name)
        if step is None:
            return self._failed(name, make_error("Internal", f"no step named {name!r}"))
        limit = request.options.timeouts.get(name, self._settings.step_timeouts.get(name))
        loop = asyncio.get_running_loop()
        started = loop.time()
        context = self._context(name, request, artifacts)
        # The step runs in the run's own task (no task and wake-ups per step), inside a scope
        # that cancels it at its deadline or, expired early by request_cancel, on a cancel.
        scope = asyncio.timeout(limit)
        result: list[Artifact] = []
        error: BaseException | None = None
        self._step_scope, self._step_cancelled = scope, False
        try:
            async with scope:
                result = list(await step(context))
        except asyncio.CancelledError as e:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the run is being stopped: so is the step, and nothing more is written
            error = e  # the step cancelled itself
        except Exception as e:  # TimeoutError from the scope included
            error = e
        finally:
            self._step_scope = None
        duration = loop.time() - started
        timed_out = scope.expired() and not self._step_cancelled
        outcome = self._outcome(name, result, error, timed_out, limit, duration)
        if not isinstance(outcome[0], StepSucceeded):
            await asyncio.to_thread(remove_temp_files, self._settings.job_dir(self.job_id))
        return outcome

    def _outcome(
        self,
        name: str,
        result: list[Artifact],
        error: BaseException | None,
        timed_out: bool,
        limit: float | None,
        duration: float,
    ) -> list[Event]:
        attempt = self.state.attempt
        if timed_out:
            error_info = make_error(
                f"StepTimeout:{name}",
                f"step {name} ran past its limit of {limit:g} s and was stopped",
                details={"limitSeconds": limit},
            )
            return self._failed(name, error_info)
        if self.state.cancel_requested and error is not None:
            return [StepCanceled(step=name, attempt=attempt), JobCanceled(attempt=attempt)]
        if isinstance(error, asyncio.CancelledError):
            return self._failed(name, make_error("Internal", f"step {name} stopped on its own"))
        if error is not None:
            error_info = map_step_error(error, name, self.state.correlation_id, self._settings)
            return self._failed(name, error_info)
        return [
            StepSucceeded(
                step=name,
                attempt=attempt,
                artifacts=tuple(result),
                duration_seconds=round(duration, 3),
            )
        ]

    def _failed(self, name: str, error: ErrorInfo) -> list[Event]:
        error = replace(error, step=name, correlation_id=self.state.correlation_id)
        attempt = self.state.attempt
        return [
            StepFailed(step=name, attempt=attempt, error=error),
            JobFailed(error=error, attempt=attempt),
        ]

    def _context(
        self, name: str, request: JobRequest, artifacts: Mapping[str, Artifact]
    ) -> StepContext:
        state = self.state

        async def warn(code: str, message: str) -> None:
            await self.append([JobWarning(code=code, message=message, step=name, attempt=a)])

        a = state.attempt
        return StepContext(
            job_id=self.job_id,
            step=name,
            attempt=a,
            correlation_id=state.correlation_id,
            preset=request.preset,
            brief=request.brief or SAMPLE_BRIEF,
            options=request.options,
            settings=self._settings,
            work_dir=self._settings.job_dir(self.job_id),
            artifacts=MappingProxyType(dict(artifacts)),
            progress=_Progress(self, name),
            warn=warn,
        )
