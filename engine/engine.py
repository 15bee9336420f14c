"""The engine façade: submit, inspect, cancel, retry and rerun jobs; the composition root that
wires the log, the job-list projector, crash recovery and the runner.

Every command reads the job, asks aura.engine.run.decide what the request means, and appends
(aura.engine.run.transact); the runner does the rest. Concurrent writers are settled by the log's
expected versions: a command that loses a race reads again and decides again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import msgspec

from aura.engine.config.inputs import JobRequest, validate_request
from aura.engine.config.saved_settings import (
    SavedSettings,
    SettingsUpdate,
    SettingsView,
    merged,
    read_saved,
    replaced_keys,
    validated,
    view,
    with_saved,
    write_saved,
)
from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import map_exception, redact
from aura.engine.errors.taxonomy import AuraError, Conflict, JobNotFound
from aura.engine.files.folder_lock import FolderLock
from aura.engine.files.job_files import output_of
from aura.engine.readmodel.eta import StepEstimates
from aura.engine.readmodel.pg_projector import ListProjector, projector_for
from aura.engine.run import recovery
from aura.engine.run.context import OutputProbe, Step
from aura.engine.run.decide import (
    created_event,
    decide_cancel,
    decide_retry,
    is_duplicate,
    job_id_for_key,
    new_job_id,
    request_of,
)
from aura.engine.run.leased_runner import LeasedRunner, runner_for
from aura.engine.run.pipeline import OUTPUT_ARTIFACT, PIPELINE
from aura.engine.run.runner import Runner
from aura.engine.run.transact import append_decided, read_job, transact
from aura.engine.tools.media import probe_output
from aura.engine.tools.preflight import check_output_dir
from aura.projections.events import Artifact, ErrorInfo, Event, JobCreated, Output
from aura.projections.job import JobState, JobStatus, fold
from aura.projections.job_list import JobRow
from aura.store.errors import ConcurrencyError, StoreError, StoreUnavailable
from aura.store.interface import EventStore, open_event_store
from aura.store.jobs_table import JobPage, ListPosition

__all__ = ["Engine", "Submitted"]

logger = logging.getLogger(__name__)

#: times a request re-reads and decides again after losing a race with another writer
_RACE_RETRIES = 20
#: seconds a cancel waits, beyond the kill grace period, for the runner to record the outcome
_CANCEL_MARGIN = 30.0


class Submitted(msgspec.Struct, frozen=True):
    """What submit returns: the job, and whether an earlier submit with the key created it."""

    job: JobState
    duplicate: bool


def video_probe(settings: Settings) -> OutputProbe:
    """The Output of a job whose artifacts include the `video`: probed with ffprobe. Without
    one (test pipelines), the last artifact's recorded size and checksum."""

    async def probe(artifacts: Mapping[str, Artifact]) -> Output:
        video = artifacts.get(OUTPUT_ARTIFACT)
        if video is None:
            return await output_of(artifacts)
        return await probe_output(Path(video.path), settings)

    return probe


class Engine:
    """Open with `await Engine.open(settings)`; close with `await engine.close()`."""

    #: the effective settings: what the engine was opened with, with the saved provider
    #: settings (settings.json) over them; replaced on a save, read by each run as it starts
    settings: Settings
    log: EventStore
    #: API keys saved earlier in this server's life and replaced since (the newest few): still
    #: secrets, redacted as the key in effect is
    past_keys: tuple[str, ...] = ()

    def __init__(
        self, settings: Settings, log: EventStore, projector: ListProjector, runner: Runner
    ) -> None:
        self.settings = settings
        #: the settings without the saved values (defaults and environment)
        self.base_settings = settings
        self.saved_settings = SavedSettings()
        self._saving = asyncio.Lock()
        self.log = log
        self.projector = projector
        self.runner = runner
        self.estimates = StepEstimates(projector.table, projector.success_mark)
        self.recovered: list[str] = []
        #: recovery waiting for the job list to be rebuilt (it names the active jobs)
        self._recovery: asyncio.Task[None] | None = None
        self._lock: FolderLock | None = None

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        pipeline: Mapping[str, Step] | None = None,
        recover: bool = True,
        output_probe: OutputProbe | None = None,
    ) -> Engine:
        """Open the log (in settings.database_url's PostgreSQL database, else in
        settings.data_dir), take the data folder's lock, start the job-list projector, recover
        the jobs the log shows as queued or running (unless `recover` is False: then they are
        left alone, and on PostgreSQL the runner claims none: it runs the jobs created through
        it), and start the runner. The data folder's saved provider settings are applied
        over `settings` (a file that cannot be read raises SettingsUnreadable).

        On PostgreSQL the runner claims jobs through leases (none with `settings.runs_jobs`
        off) and its claims recover the interrupted ones: no start-up recovery (a Running job
        may be another worker's, live).

        On SQLite, a job list far behind the log is rebuilt in the background
        (`projector.rebuilding`): this returns at once, jobs can be submitted and read
        meanwhile, and recovery follows the rebuild (`wait_recovered`)."""
        pipeline = PIPELINE if pipeline is None else pipeline
        base, saved = settings, read_saved(settings.data_dir)
        settings = with_saved(base, saved)
        log = await _open_log(settings)
        lock = FolderLock(settings.data_dir)
        try:
            lock.acquire()
            projector = projector_for(log)
            await projector.start()
            probe = output_probe or video_probe(settings)
            runner = runner_for(log, settings, pipeline, probe, claims=recover)
            engine = cls(settings, log, projector, runner)
            engine.base_settings, engine.saved_settings = base, saved
            engine._lock = lock
            if recover and projector.rebuilding:
                engine._recovery = asyncio.create_task(
                    engine._recover_once_listed(), name="recovery after the job-list rebuild"
                )
            elif recover and not isinstance(runner, LeasedRunner):  # else claims recover
                engine.recovered = await recovery.recover(log, projector, settings, runner)
            await runner.start()
        except BaseException:
            await log.close()
            lock.release()
            raise
        return engine

    async def close(self) -> None:
        """Stop the runner (running jobs stay as the log says; the next start resumes them),
        the projector and the log."""
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        await self.runner.stop()
        await self.projector.stop()
        await self.log.close()
        if self._lock is not None:
            self._lock.release()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- commands -----------------------------------------------------------------------

    async def submit(self, request: JobRequest, *, idempotency_key: str | None = None) -> Submitted:
        """Create a job and queue it. With `idempotency_key`, the same key and the same request
        return the job created first (duplicate=True); a different request is a Conflict."""
        return await self._create(validate_request(request), idempotency_key, None)

    async def rerun(self, job_id: str) -> JobState:
        """A new job with the same inputs as `job_id` (its JobCreated names the original)."""
        created = await self._created(job_id)
        submitted = await self._create(request_of(created), None, job_id)
        return submitted.job

    async def cancel(self, job_id: str) -> JobState:
        """Cancel a queued or running job and return its state once the runner has stopped it
        (JobCanceled appended). Conflict when it already ended."""
        for _ in range(_RACE_RETRIES):
            run = self.runner.run_for(job_id)
            if run is not None and await run.request_cancel() is not None:
                if run.task is not None:
                    timeout = self.settings.kill_grace_seconds + _CANCEL_MARGIN
                    await asyncio.wait({run.task}, timeout=timeout)
                return await self.get(job_id)
            self.runner.dequeue(job_id)
            try:
                done = await transact(self.log, job_id, self._cancel_unowned)
            except ConcurrencyError:
                continue
            if done is None:
                raise JobNotFound(job_id)
            if done.events:
                return done.after
            # nothing decided: a run picked the job up meanwhile, and the next round tells it
        raise Conflict(job_id, "it keeps changing; try the cancel again")

    def _cancel_unowned(self, state: JobState) -> list[Event]:
        """The cancel of a job no run here holds; nothing when a run has picked it up since."""
        if self.runner.run_for(state.job_id) is not None:
            return []
        return decide_cancel(state, owned=False)

    async def retry(self, job_id: str) -> JobState:
        """A new attempt of a Failed or Canceled job, from its failed step: JobRetryRequested
        is appended (status Queued, attempt N+1) before this returns. LogUnwritable while its
        failure waits to be recorded (the log says Running)."""
        refused = self.unrecorded(job_id)
        if refused is not None:
            raise AuraError(refused)
        for _ in range(_RACE_RETRIES):
            try:
                # Shielded with the enqueue: a caller that goes away (a dropped HTTP request)
                # must not leave a retried job Queued with no run to pick it up.
                done = await transact(
                    self.log,
                    job_id,
                    decide_retry,
                    lambda state, events: asyncio.shield(self._append_and_enqueue(state, events)),
                )
            except ConcurrencyError:
                continue
            if done is None:
                raise JobNotFound(job_id)
            return done.after
        raise Conflict(job_id, "it keeps changing; try the retry again")

    async def save_settings(self, update: SettingsUpdate) -> SettingsView:
        """Save provider settings from the page (settings.json) and use them for every run that
        starts from now on (a new job, a retry); a run already going keeps those it started
        with. Raises InvalidInput naming a member that is not usable."""
        update = validated(update)
        # Shielded: a caller that goes away must not leave the file saved and the engine not
        # using it.
        return await asyncio.shield(self._save_settings(update))

    async def _save_settings(self, update: SettingsUpdate) -> SettingsView:
        async with self._saving:  # two saves at once: the second merges into the first's
            saved = merged(self.saved_settings, update)
            try:
                await asyncio.to_thread(write_saved, self.base_settings.data_dir, saved)
            except OSError as e:  # a full disk, a read-only folder: nothing changed
                raise AuraError(map_exception(e, step=None, settings=self.settings)) from e
            self.past_keys = replaced_keys(self.past_keys, self.saved_settings, saved)
            self.saved_settings = saved
            self.settings = self.runner.settings = with_saved(self.base_settings, saved)
        return self.settings_view()

    # ---- queries ------------------------------------------------------------------------

    def settings_view(self) -> SettingsView:
        """The provider settings in effect and where each comes from (never the key)."""
        return view(self.base_settings, self.saved_settings)

    async def get(self, job_id: str) -> JobState:
        """The job's state, folded from its events. Raises JobNotFound."""
        state = await read_job(self.log, job_id)
        if state is None:
            raise JobNotFound(job_id)
        return state

    def unrecorded(self, job_id: str) -> ErrorInfo | None:
        """`LogUnwritable` while the job's failure waits for a log that refuses writes."""
        return self.runner.unrecorded.job_error(job_id)

    def log_refusal(self) -> ErrorInfo | None:
        """`LogUnwritable` while the log refuses to record a decision about any job."""
        return self.runner.unrecorded.log_error()

    async def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRow]:
        """Jobs newest first, from the job-list read model (written with every append)."""
        return (await self.list_page(status=status, limit=limit, offset=offset)).rows

    async def list_page(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 50,
        offset: int = 0,
        after: ListPosition | None = None,
    ) -> JobPage:
        """Like list_jobs, after the position `after` if given (a seek, as fast deep in the list
        as on its first page; UnknownPosition if it names no row), with the log's last seq the
        rows are consistent with (every change after them is an event after it) and the
        position the next page starts at (None on the last page)."""
        return await self.projector.page(status, limit, offset, after)

    async def eta(self, state: JobState) -> float | None:
        """Seconds until the job is done, from its preset's recent Succeeded jobs; None when
        unknown or when the job is not Queued or Running."""
        return await self.estimates.eta(state)

    async def wait_recovered(self) -> None:
        """Return once start-up's recovery is done (it waits for a job-list rebuild)."""
        if self._recovery is not None:
            await asyncio.shield(self._recovery)

    async def run_until_idle(self) -> None:
        """Return once no job is queued or running in this engine (for tests and `aura sample`),
        start-up's recovery done first."""
        await self.wait_recovered()
        await self.runner.wait_idle()

    # ---- helpers ------------------------------------------------------------------------

    async def _recover_once_listed(self) -> None:
        """Recovery, once the job list is rebuilt (a failure is logged: the server goes on)."""
        try:
            await self.projector.wait_rebuilt()
            if self.projector.problem() is not None:  # health says so
                logger.error("crash recovery skipped: the job list could not be rebuilt")
            elif not self.projector.rebuilding:  # else stopped meanwhile
                settings, runner = self.settings, self.runner
                self.recovered = await recovery.recover(self.log, self.projector, settings, runner)
        except Exception:  # a task nobody awaits: say why, or nobody ever learns it
            logger.exception("recovery after the job-list rebuild failed")

    async def _create(
        self, request: JobRequest, key: str | None, rerun_of: str | None
    ) -> Submitted:
        job_id = new_job_id() if key is None else job_id_for_key(key)
        created = created_event(
            request,
            tuple(self.runner.pipeline),
            correlation_id=uuid.uuid4().hex,
            idempotency_key=key,
            rerun_of=rerun_of,
        )
        try:
            # Shielded with the enqueue: a caller that goes away must not leave the new job
            # Queued with no run to pick it up.
            state = await asyncio.shield(self._create_and_enqueue(job_id, created))
        except ConcurrencyError:
            if key is None:
                raise
            existing = await self._created(job_id)
            is_duplicate(existing, request, key)
            return Submitted(job=await self.get(job_id), duplicate=True)
        return Submitted(job=state, duplicate=False)

    async def _created(self, job_id: str) -> JobCreated:
        records = await self.log.read(job_id, 0)
        if not records or not isinstance(records[0].event, JobCreated):
            raise JobNotFound(job_id)
        return records[0].event

    async def _create_and_enqueue(self, job_id: str, created: JobCreated) -> JobState:
        """Append the new job's JobCreated and queue it for a run."""
        new = fold(await self.runner.create(job_id, created))
        assert new is not None
        return new

    async def _append_and_enqueue(self, state: JobState, events: list[Event]) -> JobState:
        """Append `events`, decided on `state`, and queue the job for a run."""
        new = await append_decided(self.log, state, events)
        self.runner.enqueue(new.job_id)
        return new


async def _open_log(settings: Settings) -> EventStore:
    """The log in settings.database_url's PostgreSQL database, else in the data folder; a
    folder that cannot be created (a path under a regular file, no permission, no space) is
    its taxonomy error, e.g. OutputDirectoryNotWritable. A database's error is redacted of the
    URL's password."""
    _refuse_unwritable(settings.data_dir)
    if settings.database_url is not None:  # SQLite's open makes it; the lock and jobs live there
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AuraError(map_exception(e, step=None, settings=settings)) from e
    location = settings.data_dir, settings.database_url
    try:
        return await open_event_store(*location, durability=settings.durability)
    except StoreUnavailable as e:  # the database does not answer: DatabaseUnavailable
        raise AuraError(map_exception(e, step=None, settings=settings)) from e
    except StoreError as e:
        shown = redact(str(e), settings)
        if shown != str(e):  # it quoted a secret (the database URL's password): not its cause
            raise StoreError(shown) from None
        if isinstance(e.__cause__, OSError):
            raise AuraError(map_exception(e.__cause__, step=None, settings=settings)) from e
        raise


def _refuse_unwritable(data_dir: Path) -> None:
    """A data folder refusing writes (a read-only mount stops root too) ends the start with its
    code, before SQLite says only "unable to open database file"."""
    if data_dir.is_dir() and not os.access(data_dir, os.W_OK):
        finding = check_output_dir(data_dir, create=False)
        if finding.failed and finding.code is not None:
            raise AuraError.of(finding.code, finding.message, details=finding.details)
