"""The runner on PostgreSQL: jobs are claimed through leases (store/pg/leases.py), so the
processes of several machines share one queue and never run one job at once.

INVARIANTS
- A job runs here only while this worker holds its lease: claimed before its run is queued (or
  taken in the commit that creates the job here, with a slot free), renewed every third of
  `settings.lease_seconds`, released when the run ends (by the append that ends the job, in
  its commit, else by a release of its own) or the runner stops. Every append of the run
  carries the lease (FencedLog): once another worker has claimed the job, the log refuses them
  (LeaseLost).
- A run stops as the runner's stop stops it (its processes killed, nothing more appended) when
  its lease is lost: a renewal refused, an append refused, or no renewal for half the lease
  (a lost connection: soon another worker may hold the job), measured on this process's
  monotonic clock from when the last successful renewal was sent.
- A run also stops when its job gets an event it did not queue (the API's cancel: the job is
  Canceled already).
- A claimed job the log shows Running was interrupted (its worker died or stopped): it gets
  JobInterrupted and resumes from its interrupted step, reusing the steps that succeeded
  (recovery.recover_job, through the fenced log).
- Claims are tried when a slot is free and a job is created or retried (here, or by another
  process: its NOTIFY says so, and no worker reads the log to learn it), when a run here ends
  while jobs may be waiting (news came while every slot was busy, the last claim left some, or
  it failed), and every third of the lease (leases expire by time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from aura.engine.config.settings import Settings
from aura.engine.files.atomic import write_text
from aura.engine.run.context import OutputProbe, Step
from aura.engine.run.fenced_log import FencedLog
from aura.engine.run.recovery import recover_job
from aura.engine.run.runner import Runner
from aura.projections.events import JobCanceled, JobCancelRequested, JobCreated, Recorded
from aura.projections.job import JobStatus
from aura.store.errors import StoreError
from aura.store.interface import EventStore
from aura.store.pg.batch import LeaseTake
from aura.store.pg.leases import FIRST_TOKEN, Lease
from aura.store.pg.log import PgEventLog

__all__ = ["WORKER_ID_FILE", "LeasedRunner", "runner_for", "worker_id_of"]

logger = logging.getLogger(__name__)

#: the data folder's file naming its worker in the leases (one engine per folder: its lock)
WORKER_ID_FILE = "worker-id"
#: without a successful renewal for this share of the lease, a run stops: its lease may be gone
STOP_AFTER_LEASE_SHARE = 0.5
#: events by which another process (the API) cancels a job: its run here stops, as expected
_CANCELS = (JobCancelRequested, JobCanceled)


def worker_id_of(data_dir: Path) -> str:
    """This data folder's worker id (made once, kept in the folder): a worker started again on
    its folder is the same worker, and frees its previous life's leases at once."""
    path = data_dir / WORKER_ID_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        worker_id = f"{socket.gethostname()}/{uuid.uuid4().hex[:12]}"
        write_text(path, worker_id + "\n")
        return worker_id


def runner_for(
    log: EventStore,
    settings: Settings,
    pipeline: Mapping[str, Step],
    output_probe: OutputProbe,
    *,
    claims: bool = True,
) -> Runner:
    """The runner for this log: on PostgreSQL one that claims jobs through leases (with
    `claims` off, it runs only the jobs created through it; with `settings.runs_jobs` off,
    none); on SQLite the runner of one process."""
    if isinstance(log, PgEventLog):
        worker_id = worker_id_of(settings.data_dir)
        return LeasedRunner(
            log, settings, pipeline, output_probe=output_probe, worker_id=worker_id, claims=claims
        )
    return Runner(log, settings, pipeline, output_probe=output_probe)


class _Held:
    """A lease this worker holds, and what it knows of it."""

    __slots__ = ("foreign", "lease", "log", "lost", "renewed")

    def __init__(self, lease: Lease, log: FencedLog, renewed: float) -> None:
        self.lease = lease
        self.log = log
        #: monotonic time the last successful claim or renewal was sent
        self.renewed = renewed
        self.lost = False
        self.foreign: _ForeignWrites | None = None


class LeasedRunner(Runner):
    """Claims jobs up to `settings.max_concurrent_jobs` and runs them under their leases."""

    def __init__(
        self,
        log: PgEventLog,
        settings: Settings,
        pipeline: Mapping[str, Step],
        *,
        output_probe: OutputProbe,
        worker_id: str,
        claims: bool = True,
    ) -> None:
        super().__init__(log, settings, pipeline, output_probe=output_probe)
        self.worker_id = worker_id
        #: whether it claims jobs; if not, it runs only those created through it (`aura sample`)
        self.claims = claims
        self._pg = log
        self._held: dict[str, _Held] = {}
        self._wake = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._releasing: set[asyncio.Task[None]] = set()
        #: claimable jobs may be waiting that this worker did not claim (it was full, or its
        #: claim failed): a run ending here claims again at once
        self._backlog = True
        #: the log's last seq known here as the last claim was sent: it saw every job until it
        self._claimed_after = 0
        #: the jobs whose creation here takes their lease, in flight (`create`): their slots
        #: are spoken for
        self._taking: set[str] = set()

    @property
    def held_job_ids(self) -> list[str]:
        """The jobs whose leases this worker holds."""
        return list(self._held)

    async def start(self) -> None:
        """Free the leases of this worker's previous life, then claim, renew and listen."""
        if not self.settings.runs_jobs:
            return
        released = await self._pg.leases.release_all(self.worker_id)
        if released:
            logger.info("freed %d lease(s) of this worker's previous run", len(released))
        loops = [(self._heartbeat(), "lease renewals")]
        if self.claims:
            loops.append((self._claim_loop(), "lease claims"))
            self._pg.on_news = self._news
        for loop, name in loops:
            self._background.append(asyncio.create_task(loop, name=name))

    async def create(self, job_id: str, created: JobCreated) -> list[Recorded]:
        """With a slot free, the new job's creation takes its first lease in the same commit
        (no claim to commit, no log to read) and its run starts here; else any worker claims
        it, this one included."""
        if not self.settings.runs_jobs or self._stopping or self._free_slots() <= 0:
            return await super().create(job_id, created)
        take = LeaseTake(self.worker_id, self.settings.lease_seconds)
        self._taking.add(job_id)
        sent = time.monotonic()
        try:
            records = await self._pg.append(job_id, [created], 0, take=take)
            lease = Lease(job_id, FIRST_TOKEN)
            held = _Held(lease, FencedLog(self._pg, lease, self._refused), sent)
            self._held[job_id] = held
        finally:
            self._taking.discard(job_id)
        if self._stopping:  # stopped meanwhile: another worker takes it
            self._let_go(job_id, held)
        else:
            self._run(job_id, held, records)
        return records

    def enqueue(self, job_id: str, log: list[Recorded] | None = None) -> None:
        """A job was created or retried here: any worker may claim it; claim now if free."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, stop every run (their jobs stay Running in the log) and release
        their leases, so another worker resumes them at once."""
        if self._pg.on_news == self._news:
            self._pg.on_news = None
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await super().stop()
        for job_id, held in list(self._held.items()):  # claimed, not started yet
            self._let_go(job_id, held)
        if self._releasing:
            await asyncio.wait(self._releasing)

    # ---- the runner's hooks --------------------------------------------------------------

    def _log_for(self, job_id: str) -> EventStore:
        held = self._held.get(job_id)
        return self.log if held is None else held.log

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        super()._finished(job_id, task)
        held = self._held.get(job_id)
        if held is not None:
            self._let_go(job_id, held)

    # ---- claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            self._wake.clear()
            try:
                await self._claim()
            except Exception:  # a task nobody awaits: say why, and claim again later
                logger.exception("claiming jobs failed")
            # asyncio.timeout, not wait_for: 3.11's wait_for loses a cancel that comes as the
            # event is set (a stop as a run ends), and this loop then never ends
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()

    def _free_slots(self) -> int:
        return max(1, self.settings.max_concurrent_jobs) - len(self._held) - len(self._taking)

    async def _claim(self) -> None:
        free = self._free_slots()
        if free <= 0:
            self._backlog = True  # news came while full: claim as a slot frees
            return
        sent = time.monotonic()
        self._claimed_after = self._pg.last_seq
        try:
            claimed = await self._pg.leases.claim_and_look(
                self.worker_id, self.settings.lease_seconds, free
            )
        except StoreError as e:
            logger.warning("claiming jobs failed: %s", e)
            self._backlog = True
            return
        self._backlog = claimed.more
        for lease in claimed.leases:
            await self._take(lease, sent)

    async def _take(self, lease: Lease, sent: float) -> None:
        """Put a claimed job to work: an interrupted one gets JobInterrupted first."""
        job_id = lease.job_id
        held = self._held[job_id] = _Held(lease, FencedLog(self._pg, lease, self._refused), sent)
        try:
            state = await recover_job(held.log, self.settings, job_id)
        except (StoreError, OSError) as e:
            logger.warning("job %s: claimed, but cannot be read or recovered: %s", job_id, e)
            state = None
        if held.lost or state is None or state.status is not JobStatus.QUEUED:
            self._let_go(job_id, held)  # ended meanwhile, or lost already
            return
        self._run(job_id, held)

    def _run(self, job_id: str, held: _Held, log: list[Recorded] | None = None) -> None:
        """Queue the held job's run here, watched for writes it did not queue."""
        held.foreign = _ForeignWrites(self, job_id)
        self._pg.watch(job_id, held.foreign)
        super().enqueue(job_id, log)

    def _let_go(self, job_id: str, held: _Held) -> None:
        """The job's run is over here: release its lease (in the background) and claim again."""
        if self._held.get(job_id) is not held:
            return
        del self._held[job_id]
        if held.foreign is not None:
            self._pg.unwatch(job_id, held.foreign)
        if self._backlog:
            self._wake.set()
        if held.log.released:  # by the append that ended the job
            return
        task = asyncio.create_task(self._release(held.lease), name=f"release {job_id}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, lease: Lease) -> None:
        try:
            await self._pg.leases.release(self.worker_id, lease.job_id, lease.token)
        except StoreError as e:  # it expires by itself
            logger.warning("job %s: cannot release its lease: %s", lease.job_id, e)

    def _news(self, seq: int) -> None:
        """Another process queued a job (created or retried one) in a commit ending at `seq`
        (its NOTIFY), or the listener reconnected: claim, unless a claim sent after that
        commit was known here has seen it."""
        if seq > self._claimed_after:
            self._wake.set()

    # ---- keeping leases ------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            for job_id, held in list(self._held.items()):
                if not held.lost:
                    await self._renew(job_id, held)

    async def _renew(self, job_id: str, held: _Held) -> None:
        lease_seconds = self.settings.lease_seconds
        sent = time.monotonic()
        try:
            async with asyncio.timeout(lease_seconds / 6):  # half the heartbeat's interval
                kept = await self._pg.leases.renew(
                    self.worker_id, job_id, held.lease.token, lease_seconds
                )
        except Exception as e:  # StoreError, TimeoutError: the database did not answer
            if time.monotonic() - held.renewed >= lease_seconds * STOP_AFTER_LEASE_SHARE:
                self._lose(job_id, held, f"its lease could not be renewed ({e or 'timeout'})")
            return
        if kept:
            held.renewed = sent
        else:
            self._lose(job_id, held, "another worker holds its lease")

    def _refused(self, job_id: str, error: BaseException) -> None:
        self.stop_run(job_id, f"the log refused its append ({error})")

    def stop_run(self, job_id: str, why: str, *, expected: bool = False) -> None:
        """Stop the held job's run here (see `_lose`)."""
        held = self._held.get(job_id)
        if held is not None:
            self._lose(job_id, held, why, expected=expected)

    def _lose(self, job_id: str, held: _Held, why: str, *, expected: bool = False) -> None:
        """Stop the job's run here: its processes are killed and nothing more is appended.
        `expected` (a cancel) is logged as news, not as a warning."""
        if held.lost:
            return
        held.lost = True
        level = logging.INFO if expected else logging.WARNING
        logger.log(level, "job %s: %s; its run here stops", job_id, why)
        run = self.run_for(job_id)
        if run is not None and run.task is not None:
            run.task.cancel()


class _ForeignWrites:
    """A store.Watcher of a held job: a version its run did not queue was written elsewhere
    (the API's cancel), so the run stops; the log already says what became of the job."""

    __slots__ = ("job_id", "runner")

    def __init__(self, runner: LeasedRunner, job_id: str) -> None:
        self.runner = runner
        self.job_id = job_id

    def on_events(self, recorded: list[Recorded]) -> None:
        run = self.runner.run_for(self.job_id)
        queued = None if run is None else run.queued_version
        if queued is not None and recorded[-1].version > queued:
            if any(isinstance(r.event, _CANCELS) for r in recorded):
                self.runner.stop_run(self.job_id, "another process canceled it", expected=True)
            else:
                self.runner.stop_run(self.job_id, "another process wrote the job")

    def on_commit(self) -> None:
        pass

    def on_end(self) -> None:
        pass
