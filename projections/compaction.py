"""Which of an ended job's events compaction may leave out: a pure decision on its records.

A job that ended before a time keeps every event but the progress ticks its final state is not
made of, and only if a fold of what is kept gives the same final state (store/compact.py writes
the copy; engine/files/pruning.py prunes the folders of the same jobs).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from msgspec.structs import replace

from aura.projections.events import Recorded, StepProgressed
from aura.projections.job import InvalidTransition, JobState, fold
from aura.projections.status import DONE_STEP_STATUSES

__all__ = ["ended_before_time", "needed_ticks", "ticks_to_drop"]


def ended_before_time(state: JobState, time: datetime) -> bool:
    """Whether the job has ended (Succeeded, Failed, Canceled, and not retried since) before
    `time`: what compaction and pruning apply to."""
    return state.is_terminal and state.ended_utc is not None and state.ended_utc < time


def needed_ticks(records: Sequence[Recorded], state: JobState) -> set[int]:
    """The seqs of the StepProgressed records the job's final state is made of.

    A step's progress and ETA come from the ticks of the job's last attempt (a retry starts
    them over) and only while the step is not done (Succeeded and Skipped set 100 %): of those,
    the furthest tick (the fold holds the highest pct) and the last (its ETA).
    """
    done = {s.name for s in state.steps if s.status in DONE_STEP_STATUSES}
    furthest: dict[str, tuple[float, int]] = {}  # step -> (pct, seq)
    last: dict[str, int] = {}  # step -> seq
    for rec in records:
        event = rec.event
        if not isinstance(event, StepProgressed) or event.attempt != state.attempt:
            continue
        if event.step in done:
            continue
        last[event.step] = rec.seq
        top = furthest.get(event.step)
        if top is None or event.pct > top[0]:
            furthest[event.step] = (event.pct, rec.seq)
    return {seq for _pct, seq in furthest.values()} | set(last.values())


def ticks_to_drop(records: Sequence[Recorded], ended_before: datetime) -> list[int]:
    """The seqs to leave out of one job's events (all of them, in version order): none unless
    the job ended before `ended_before` and a fold of the rest gives it the same final state."""
    try:
        state = fold(records)
    except InvalidTransition:
        return []  # not ours to judge: copied as it is
    if state is None or not ended_before_time(state, ended_before):
        return []
    needed = needed_ticks(records, state)
    drop = [r.seq for r in records if isinstance(r.event, StepProgressed) and r.seq not in needed]
    if not drop:
        return []
    dropped = set(drop)
    kept = [r for r in records if r.seq not in dropped]
    try:
        after = fold(replace(r, version=i) for i, r in enumerate(kept, 1))
    except InvalidTransition:
        return []
    if after is None or replace(after, version=state.version) != state:
        return []
    return drop
