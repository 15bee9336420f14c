"""Read the job, decide, append, fold: how a decision about a job reaches its log.

The state a decision is made on is the fold of the job's log; what it decides is checked against
that state (nothing invalid reaches the log) and appended at that state's version, so a writer
that got there first makes the append fail with ConcurrencyError instead of interleaving. The
caller chooses how the append travels (`append`): straight to the log, shielded and queued for a
run (Engine.retry), or in a running job's ordered queue (JobRun), and what a lost race means.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NamedTuple

from aura.engine.errors.taxonomy import make_error
from aura.engine.run.decide import check_events
from aura.projections.events import ErrorInfo, Event
from aura.projections.job import JobState, fold
from aura.store.errors import ConcurrencyError, CorruptEvent, StoreError, StoreFull
from aura.store.interface import EventStore

__all__ = [
    "Append",
    "Decide",
    "Refused",
    "Transacted",
    "Unrecorded",
    "append_decided",
    "read_job",
    "transact",
    "transact_until_recorded",
]

logger = logging.getLogger(__name__)

#: the longest wait between tries to record a decision while the log refuses writes (another
#: process holding its lock, a full disk), and how often a try is logged
RECORD_MAX_DELAY = 8.0
RECORD_LOG_EVERY = 10

#: what a command means for a job in `state`: the events to append (none: nothing to do)
Decide = Callable[[JobState], list[Event]]
#: appends events decided on `state` at its version; the state after them
Append = Callable[[JobState, list[Event]], Awaitable[JobState]]


class Transacted(NamedTuple):
    """A decision made and appended: the state it was made on, its events, the state after."""

    before: JobState
    events: list[Event]
    after: JobState


async def read_job(log: EventStore, job_id: str) -> JobState | None:
    """The job's state, folded from its log; None when there is no such job."""
    return fold(await log.read(job_id))


async def append_decided(log: EventStore, state: JobState, events: list[Event]) -> JobState:
    """Append `events`, decided on `state`, at its version (checked first: InvalidTransition
    before anything invalid is appended); the state after them, as the log recorded them."""
    check_events(state, events)
    # Shielded: a caller that goes away (a dropped request) leaves the append's future alone;
    # the append commits either way.
    records = await asyncio.shield(log.append(state.job_id, events, state.version))
    new = fold(records, state)
    assert new is not None
    return new


async def transact(
    log: EventStore, job_id: str, decide: Decide, append: Append | None = None
) -> Transacted | None:
    """Read the job, decide on its state and append what was decided (`append_decided` unless
    `append` is given); nothing is appended when nothing was decided. None: no such job.

    Raises what `decide` raises (Conflict) and what the append raises (ConcurrencyError when
    the job was written since it was read: read and decide again, or give up).
    """
    before = await read_job(log, job_id)
    if before is None:
        return None
    events = decide(before)
    if not events:
        return Transacted(before, events, before)
    if append is None:
        after = await append_decided(log, before, events)
    else:
        after = await append(before, events)
    return Transacted(before, events, after)


class Refused(NamedTuple):
    """A decision about a job that the log has refused so far and that is being tried again."""

    #: the decision, as the log messages name it ("its failure")
    what: str
    #: why the log refused its last try
    error: StoreError
    #: when the log first refused it (UTC)
    since: datetime
    tries: int


class Unrecorded:
    """What the engine has decided about its jobs and the log has refused to record, while it
    tries again: the log's state of such a job is behind what happened (a job left Running
    with nothing running), and a client must be told so (`LogUnwritable`)."""

    def __init__(self) -> None:
        self._refused: dict[str, Refused] = {}

    def job_error(self, job_id: str) -> ErrorInfo | None:
        """`LogUnwritable` for the job, when a decision about it waits to be recorded."""
        refused = self._refused.get(job_id)
        if refused is None:
            return None
        return _log_unwritable(
            f"{refused.what} is not recorded yet, so this job's state is behind",
            refused,
            {"waiting": refused.what},
        )

    def log_error(self) -> ErrorInfo | None:
        """`LogUnwritable` for the whole log, when any decision waits to be recorded."""
        if not self._refused:
            return None
        newest = max(self._refused.values(), key=lambda r: r.since)
        jobs = sorted(self._refused)
        what = f"the outcome of {len(jobs)} job{'s' * (len(jobs) > 1)} is not recorded yet"
        return _log_unwritable(what, newest, {"jobIds": jobs[:20]})

    def note(self, job_id: str, what: str, error: StoreError) -> None:
        before = self._refused.get(job_id)
        since = datetime.now(UTC) if before is None else before.since
        tries = 1 if before is None else before.tries + 1
        self._refused[job_id] = Refused(what, error, since, tries)

    def recorded(self, job_id: str) -> None:
        """The decision about the job was recorded, or given up on."""
        self._refused.pop(job_id, None)


def _log_unwritable(what: str, refused: Refused, details: dict[str, object]) -> ErrorInfo:
    full = isinstance(refused.error, StoreFull)
    reason = ("the disk holding it is full: " if full else "") + str(refused.error)[:300]
    message = (
        f"the event log refuses writes ({reason}): {what}; the server tries again every "
        f"{RECORD_MAX_DELAY:g} s at most"
    )
    since = refused.since.isoformat(timespec="seconds").replace("+00:00", "Z")
    extra = {"full": full, "sinceUtc": since, "tries": refused.tries}
    return make_error("LogUnwritable", message, details=details | extra)


async def transact_until_recorded(
    log: EventStore,
    job_id: str,
    decide: Decide,
    append: Append | None = None,
    *,
    what: str,
    unrecorded: Unrecorded | None = None,
) -> None:
    """`transact`, tried again (read and decided again) for as long as the log refuses writes
    or the job is written meanwhile. It gives up, logging why, when the log closes, when the
    job's log cannot be read (trying again would not help) and on a bug. `what`: the decision,
    as the log messages name it ("its failure"); `unrecorded` holds it while the log refuses it."""
    waiting = unrecorded if unrecorded is not None else Unrecorded()
    delay, tries = 0.25, 0
    try:
        while True:
            try:
                await transact(log, job_id, decide, append)
                return
            except CorruptEvent:  # the job's log cannot be read: trying again would not help
                logger.exception("job %s: %s could not be recorded", job_id, what)
                return
            except StoreError as e:  # refused (or written meanwhile): read it again, try again
                if log.closing:
                    logger.error("job %s: %s could not be recorded: %s", job_id, what, e)
                    return
                if not isinstance(e, ConcurrencyError):  # written meanwhile: no refusal
                    waiting.note(job_id, what, e)
                tries += 1
                if tries % RECORD_LOG_EVERY == 1:  # the first, then now and then
                    logger.warning(
                        "job %s: cannot record %s yet (try %d): %s", job_id, what, tries, e
                    )
            except Exception:  # a bug: trying again would only repeat it
                logger.exception("job %s: %s could not be recorded", job_id, what)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECORD_MAX_DELAY)
    finally:
        waiting.recorded(job_id)
