"""The runner: starts queued jobs' runs, a bounded number at once, in the order they were queued.

INVARIANTS
- A job is executed by at most one JobRun in this process (`_running`).
- Queued jobs start in the order they were enqueued. A job enqueued again while its previous
  run is still finishing (a retry right after a failure) waits for that run.
- A job enqueued with its whole log (one just created here) starts from that log instead of
  reading it again: while a job is queued, nothing in this process writes it but a dequeue
  followed by the dequeuer's own append (Engine.cancel), and no other process writes the data
  folder (engine.folder_lock). Should that ever break, the run's first append fails with
  ConcurrencyError, which stops the run (and its first step, at its first wait) unwritten.
- Stopping the runner cancels each run, which stops its step's processes and appends nothing:
  the log keeps saying Running, and the next start's recovery resumes the job.
- With a step observer (`observe_steps`), each run's job is watched on the log (a
  store.Watcher) from before its task starts until it ends: each step that succeeds in a run
  here is told once (in a run already going when the observer came, from then on).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping

from aura.engine.config.settings import Settings
from aura.engine.files.job_files import output_of
from aura.engine.run.context import OutputProbe, Step
from aura.engine.run.job_run import JobRun
from aura.engine.run.transact import Unrecorded
from aura.projections.events import JobCreated, Recorded, StepSucceeded
from aura.store.interface import EventStore

__all__ = ["Runner", "StepObserver"]

#: told of each step that succeeds in a run here: (step, its duration in seconds)
StepObserver = Callable[[str, float], None]

logger = logging.getLogger(__name__)


class Runner:
    """Starts queued jobs, at most `settings.max_concurrent_jobs` at once, in queue order."""

    def __init__(
        self,
        log: EventStore,
        settings: Settings,
        pipeline: Mapping[str, Step],
        *,
        output_probe: OutputProbe = output_of,
    ) -> None:
        self.log = log
        self.settings = settings
        self.pipeline = pipeline
        self.output_probe = output_probe
        #: jobs waiting for a slot, in queue order -> each one's log, when the enqueuer had it
        self._waiting: dict[str, list[Recorded] | None] = {}
        self._running: dict[str, JobRun] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._step_observer: StepObserver | None = None  # aura.engine.metrics sets one
        self._watches: dict[str, _StepWatch] = {}
        #: what runs here decided and the log refuses to record yet (their failures)
        self.unrecorded = Unrecorded()

    async def create(self, job_id: str, created: JobCreated) -> list[Recorded]:
        """Append a new job's JobCreated and queue the job with it (its whole log); returns
        its records. Raises what the append raises (ConcurrencyError: the job exists)."""
        records = await self.log.append(job_id, [created], 0)
        self.enqueue(job_id, records)
        return records

    def enqueue(self, job_id: str, log: list[Recorded] | None = None) -> None:
        """Queue the job; `log`: all its events, when the caller has just written them."""
        self._waiting[job_id] = log
        self._dispatch()

    def dequeue(self, job_id: str) -> bool:
        """Take a job that has not started off the queue; False if it was not waiting."""
        found = job_id in self._waiting
        self._waiting.pop(job_id, None)
        self._update_idle()
        return found

    def run_for(self, job_id: str) -> JobRun | None:
        return self._running.get(job_id)

    @property
    def queued_job_ids(self) -> list[str]:
        """The jobs waiting here for a slot, in the order they will start."""
        return list(self._waiting)

    def observe_steps(self, observer: StepObserver | None) -> None:
        """Tell `observer` of each step that succeeds in a run here from now on (None: stop)."""
        for job_id, watch in self._watches.items():
            self.log.unwatch(job_id, watch)
        self._watches.clear()
        self._step_observer = observer
        for job_id in self._running:
            self._watch(job_id)

    async def start(self) -> None:
        """Nothing to start: jobs come by `enqueue` (a leased runner claims them)."""

    async def wait_idle(self) -> None:
        """Return once no job is queued or running here."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Stop every run (their steps' processes are killed); the log keeps their state."""
        self._stopping = True
        self._waiting.clear()
        tasks = [run.task for run in self._running.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._update_idle()

    def _dispatch(self) -> None:
        limit = max(1, self.settings.max_concurrent_jobs)
        for job_id in list(self._waiting):
            if self._stopping or len(self._running) >= limit:
                break
            if job_id in self._running:
                continue
            run = JobRun(
                job_id,
                self._waiting.pop(job_id),
                log=self._log_for(job_id),
                settings=self.settings,
                pipeline=self.pipeline,
                output_probe=self.output_probe,
                unrecorded=self.unrecorded,
            )
            self._running[job_id] = run
            self._watch(job_id)
            run.task = asyncio.create_task(run.execute(), name=f"job {job_id}")
            run.task.add_done_callback(functools.partial(self._finished, job_id))
        self._update_idle()

    def _log_for(self, job_id: str) -> EventStore:
        """The log a run of the job appends to (a leased runner fences it)."""
        return self.log

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        run = self._running.pop(job_id, None)
        if run is not None:
            run.finished()
        watch = self._watches.pop(job_id, None)
        if watch is not None:
            self.log.unwatch(job_id, watch)
        if not task.cancelled() and task.exception() is not None:
            logger.error("job %s: run ended with %r", job_id, task.exception())
        self._dispatch()

    def _watch(self, job_id: str) -> None:
        if self._step_observer is not None and not self.log.closing:
            watch = self._watches[job_id] = _StepWatch(self._step_observer)
            self.log.watch(job_id, watch)

    def _update_idle(self) -> None:
        if (self._waiting and not self._stopping) or self._running:
            self._idle.clear()
        else:
            self._idle.set()


class _StepWatch:
    """A store.Watcher of one run's job: tells the observer of each StepSucceeded committed."""

    __slots__ = ("observer",)

    def __init__(self, observer: StepObserver) -> None:
        self.observer = observer

    def on_events(self, recorded: list[Recorded]) -> None:
        for rec in recorded:
            event = rec.event
            if type(event) is StepSucceeded:
                self.observer(event.step, event.duration_seconds)

    def on_commit(self) -> None:
        pass

    def on_end(self) -> None:
        pass
