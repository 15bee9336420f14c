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
from typing import NamedTuple

from aura.engine.run.decide import check_events
from aura.projections.events import Event
from aura.projections.job import JobState, fold
from aura.store.errors import CorruptEvent, StoreError
from aura.store.log import EventLog

__all__ = [
    "Append",
    "Decide",
    "Transacted",
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


async def read_job(log: EventLog, job_id: str) -> JobState | None:
    """The job's state, folded from its log; None when there is no such job."""
    return fold(await log.read(job_id))


async def append_decided(log: EventLog, state: JobState, events: list[Event]) -> JobState:
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
    log: EventLog, job_id: str, decide: Decide, append: Append | None = None
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


async def transact_until_recorded(
    log: EventLog, job_id: str, decide: Decide, append: Append | None = None, *, what: str
) -> None:
    """`transact`, tried again (read and decided again) for as long as the log refuses writes
    or the job is written meanwhile. It gives up, logging why, when the log closes, when the
    job's log cannot be read (trying again would not help) and on a bug. `what`: the decision,
    as the log messages name it ("its failure")."""
    delay, tries = 0.25, 0
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
            tries += 1
            if tries % RECORD_LOG_EVERY == 1:  # the first, then now and then
                logger.warning("job %s: cannot record %s yet (try %d): %s", job_id, what, tries, e)
        except Exception:  # a bug: trying again would only repeat it
            logger.exception("job %s: %s could not be recorded", job_id, what)
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECORD_MAX_DELAY)
