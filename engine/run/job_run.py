"""One run of a job: from JobStarted through each step to its terminal event, all recorded.

INVARIANTS
- A job is executed by at most one JobRun in this process (`Runner._running`). A JobRun appends
  with expected_version taken from its own folded state, so when anything else writes the job
  its next append raises ConcurrencyError and it stops instead of interleaving.
- Every append of a JobRun goes through `_append_nowait`, synchronously: checked against the fold
  first (nothing invalid reaches the log), folded at once, queued for the log's next group
  commit. Appends commit in the order they were queued, so expected versions chain and nothing
  else needs a lock. The run awaits durability only for its terminal events and cancel
  requests; a queued append that fails stops the running step and fails the run with its error
  (`_check_appends`), and `_fail` then starts again from what did commit.
- A step runs in the run's own task inside a timeout scope (`asyncio.timeout`): its deadline,
  or a cancel request expiring it at once, cancels the step alone; the run then records
  StepTimeout or StepCanceled.
- A run cancelled from outside (the runner stops) stops its step first (its process group is
  killed by the step's process helper) and appends nothing more: the log keeps saying Running,
  and the next start's recovery appends JobInterrupted and resumes the job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping

from aura.engine.config.inputs import JobRequest
from aura.engine.config.logs import bind_job
from aura.engine.config.settings import Settings
from aura.engine.errors.taxonomy import make_error
from aura.engine.files.job_files import rebased, remove_temp_files, verify_artifacts
from aura.engine.run.context import OutputProbe, Step, StepContext, step_context
from aura.engine.run.decide import (
    artifacts_changed,
    check_events,
    decide_cancel,
    decide_reuse,
    request_of,
    reuse_candidates,
)
from aura.engine.run.outcome import (
    StepEnd,
    decide_probe_timeout,
    decide_run_failed,
    decide_step_outcome,
    step_canceled,
    step_failed,
)
from aura.engine.run.transact import Unrecorded, transact_until_recorded
from aura.projections.events import (
    Artifact,
    Event,
    JobCanceled,
    JobCreated,
    JobStarted,
    JobSucceeded,
    Recorded,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobState, JobStatus, fold
from aura.store.batch import QueuedAppend
from aura.store.errors import ConcurrencyError
from aura.store.interface import EventStore

__all__ = ["JobRun"]

logger = logging.getLogger(__name__)

#: the longest the finished video's probe (ffprobe, sha256) may take
OUTPUT_PROBE_SECONDS = 120.0


class JobRun:
    """One execution of a queued job: from JobStarted to its terminal event (or a stop)."""

    def __init__(
        self,
        job_id: str,
        records: list[Recorded] | None,
        *,
        log: EventStore,
        settings: Settings,
        pipeline: Mapping[str, Step],
        output_probe: OutputProbe,
        unrecorded: Unrecorded | None = None,
    ) -> None:
        self.job_id = job_id
        self._handed_log = records  # the job's events, when the enqueuer had them (see Runner)
        self._log = log
        self._settings = settings
        self._pipeline = pipeline
        self._output_probe = output_probe
        self._unrecorded = unrecorded
        self._job_dir = settings.job_dir(job_id)
        self._loaded = asyncio.Event()
        self._last_append: QueuedAppend | None = None
        self._append_error: BaseException | None = None
        self._step_scope: asyncio.Timeout | None = None  # while a step runs
        self._step_cancelled = False  # its scope was expired by a cancel request
        # the fold of everything queued; its times and seqs are provisional (the store stamps
        # them at the commit), which no decision of the run depends on
        self._state: JobState | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def state(self) -> JobState:
        assert self._state is not None, "the run has not loaded its job"
        return self._state

    @property
    def queued_version(self) -> int | None:
        """The job's version after everything the run has queued; None until it loaded the job
        (a later version in the log was written by someone else)."""
        return None if self._state is None else self._state.version

    @property
    def work_dir(self) -> str:
        return str(self._job_dir)

    # ---- appending ----------------------------------------------------------------------

    def _append_nowait(self, events: list[Event]) -> asyncio.Future[list[Recorded]]:
        """Queue `events` for the log's next group commit after the run's own version, folding
        them at once (checked first: nothing invalid is queued). Appends commit in the order
        they were queued, so the next can be queued before this one has committed; a failure is
        kept (`_append_error`) and stops the running step."""
        state = self.state
        new = check_events(state, events)
        queued = self._log.append_nowait(
            self.job_id, events, state.version, after=self._last_append
        )
        queued.future.add_done_callback(self._appended)
        self._state = new
        self._last_append = queued
        return queued.future

    async def append(self, events: list[Event]) -> JobState:
        """Queue `events` and wait until they are committed (raising what the commit raised)."""
        if not events:
            return self.state
        future = self._append_nowait(events)
        state = self.state
        await asyncio.shield(future)  # a caller that goes away leaves the append to commit
        return state

    def _appended(self, future: asyncio.Future[list[Recorded]]) -> None:
        if future.cancelled() or (error := future.exception()) is None:
            return
        if self._append_error is None:
            self._append_error = error
            self._stop_step()

    def _check_appends(self) -> None:
        """Raise the first error a queued append met (later ones only follow from it)."""
        if self._append_error is not None:
            raise self._append_error

    # ---- cancel -------------------------------------------------------------------------

    async def request_cancel(self) -> JobState | None:
        """Record the cancel request and stop the running step. None: this run does not own the
        job (it was not queued when the run looked, or the run has stopped); Conflict when the
        job already ended."""
        await self._loaded.wait()
        if self._state is None:
            return None
        # Shielded: the request is queued and the step stopped at once; a caller that goes away
        # (an HTTP request) must not cancel the append's future, whose outcome the run observes.
        return await asyncio.shield(self._cancel_now())

    async def _cancel_now(self) -> JobState | None:
        if self.task is not None and self.task.done():
            return None  # stopped: what it queued may not all have committed
        future = self._append_nowait(decide_cancel(self.state, owned=True))
        state = self.state
        self._stop_step()
        await future
        return state

    def _stoppable(self, limit: float | None) -> asyncio.Timeout:
        """The scope a step (or the output probe) runs in: it expires at `limit`, or at once on
        a cancel request or a failed append (`_stop_step`). Raises the error of an append that
        failed already: nothing starts after it. The caller clears `_step_scope` when done."""
        self._check_appends()
        scope = asyncio.timeout(limit)
        self._step_scope, self._step_cancelled = scope, False
        return scope

    def _stop_step(self) -> None:
        """Cancel the running step, if any, by expiring its scope at once."""
        scope = self._step_scope
        if scope is not None and not scope.expired():
            self._step_cancelled = True
            scope.reschedule(asyncio.get_running_loop().time())

    def finished(self) -> None:
        """The run's task is done (maybe cancelled before it ever ran): nobody waits on it."""
        self._loaded.set()

    # ---- executing ----------------------------------------------------------------------

    async def execute(self) -> None:
        bind_job(self.job_id)  # the run's own task: its records name the job
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
        bind_job(self.job_id, created.correlation_id)
        self._state = state
        self._loaded.set()
        if state.cancel_requested:
            await self.append([JobCanceled(attempt=state.attempt)])
            return
        request = request_of(created)
        try:
            self._job_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where the folder goes, a read-only disk: no bug to log
            logger.warning("job %s: cannot create its folder: %s", self.job_id, e)
            await self._fail(e)
            return
        final = await self._steps(records, request)
        await self.append(final)

    async def _fail(self, exc: BaseException) -> None:
        """Record the job as failed (decided on what did commit, not on the queue), trying again
        for as long as the log refuses writes (a full disk, another process holding its lock): a
        job left Running with nothing running would refuse retry until a restart. Stopping the
        runner stops this too; a job left Running then is found by the next start's recovery."""
        if self._state is None:
            return
        if self._last_append is not None:  # appends commit in order: then all have settled
            await asyncio.wait({self._last_append.future})
        decide = functools.partial(decide_run_failed, exc=exc, settings=self._settings)
        await transact_until_recorded(
            self._log,
            self.job_id,
            decide,
            self._append_after,
            what="its failure",
            unrecorded=self._unrecorded,
        )

    async def _append_after(self, state: JobState, events: list[Event]) -> JobState:
        """Append `events` after `state`, read from the log: the run goes on from what did
        commit, its failed appends forgotten."""
        self._state, self._append_error, self._last_append = state, None, None
        return await self.append(events)

    async def _steps(self, records: list[Recorded], request: JobRequest) -> list[Event]:
        """Run or reuse each step in order; returns the job's terminal events.

        Transitions are queued, not awaited (see `_append_nowait`): the group commit takes them at
        the run's next wait, so a step that waits (a process, a file) has its StepStarted committed
        as soon as it does, and steps that never wait share one commit. Events decided without
        waiting (JobStarted, StepSucceeded, StepSkipped) are carried into the next append.
        Only the terminal events are awaited (in `_execute`).
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
                carry = self._flush_carry(carry)
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
                # where the files are now (the data folder may have moved since)
                artifacts.update((a.name, rebased(a, self._job_dir)) for a in candidate.artifacts)
                continue
            outcome = await self._run_step(step.name, request, artifacts, carry)
            succeeded = outcome[0]
            if not isinstance(succeeded, StepSucceeded):
                return outcome
            carry = outcome
            upstream_changed = upstream_changed or artifacts_changed(candidate, succeeded.artifacts)
            artifacts.update((a.name, a) for a in succeeded.artifacts)
        self._flush_carry(carry)
        return await self._probe(artifacts)

    def _flush_carry(self, carry: list[Event]) -> list[Event]:
        """Queue the carried events (if any); the new, empty carry."""
        if carry:
            self._append_nowait(carry)
        return []

    async def _probe(self, artifacts: Mapping[str, Artifact]) -> list[Event]:
        """JobSucceeded with the finished video's Output, or the job's end when its probe was
        stopped. The probe runs in a scope a cancel request expires, as a step's does: a cancel
        that comes while it runs (a stalled ffprobe) ends the job Canceled at once."""
        limit = OUTPUT_PROBE_SECONDS
        scope = self._stoppable(limit)
        try:
            async with scope:
                output = await self._output_probe(artifacts)
        except TimeoutError:
            self._check_appends()  # a failed append stopped the probe: the run fails with it
            return decide_probe_timeout(self.state, limit, canceled=self._step_cancelled)
        finally:
            self._step_scope = None
        self._check_appends()
        return [JobSucceeded(output=output, attempt=self.state.attempt)]

    async def _run_step(
        self,
        name: str,
        request: JobRequest,
        artifacts: Mapping[str, Artifact],
        carry: list[Event],
    ) -> list[Event]:
        """Run one step to its outcome: [StepSucceeded], or the job's terminal events."""
        self._append_nowait([*carry, StepStarted(step=name, attempt=self.state.attempt)])
        if self.state.cancel_requested:
            return step_canceled(self.state, name)
        step = self._pipeline.get(name)
        if step is None:
            return step_failed(self.state, name, make_error("Internal", f"no step named {name!r}"))
        limit = request.options.timeouts.get(name, self._settings.step_timeouts.get(name))
        # `_call` enters the step's scope, timing `limit` from now, before its next wait
        now = asyncio.get_running_loop().time()
        context = step_context(
            self.state,
            name,
            request,
            settings=self._settings,
            work_dir=self._job_dir,
            artifacts=artifacts,
            queue=self._append_nowait,
            deadline=None if limit is None else now + limit,
        )
        end = await self._call(step, context, limit)
        outcome = decide_step_outcome(self.state, name, end, limit=limit, settings=self._settings)
        if not isinstance(outcome[0], StepSucceeded):
            await asyncio.to_thread(remove_temp_files, self._job_dir)
        return outcome

    async def _call(self, step: Step, context: StepContext, limit: float | None) -> StepEnd:
        """Call the step in the run's own task (no task and wake-ups per step), inside a scope
        that cancels it at its deadline or, expired early by request_cancel, on a cancel."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        result: list[Artifact] = []
        error: BaseException | None = None
        scope = self._stoppable(limit)
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
        self._check_appends()  # a failed append stopped the step: the run fails with its error
        return StepEnd(
            artifacts=tuple(result),
            error=error,
            timed_out=scope.expired() and not self._step_cancelled,
            duration=loop.time() - started,
        )
