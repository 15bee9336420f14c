"""`aura replay JOB_ID`: a job's timeline and its state at any seq, read from the log directly.

Opens the database read-only, so it works on a copy of a user's data folder, and needs no
server. Configured secrets (OPENAI_API_KEY, AURA_TOKEN, the key saved in the data folder's
settings) and key-like text are redacted from what it prints, as the job's diagnostics are.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec

from aura.cli.main import add_data_dir, add_database_url
from aura.engine.config.saved_settings import read_saved, with_saved
from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import redact
from aura.engine.errors.taxonomy import AuraError
from aura.projections.events import (
    JobFailed,
    JobRetryRequested,
    JobSucceeded,
    JobWarning,
    OutputsPruned,
    Recorded,
    StepFailed,
    StepProgressed,
    StepSkipped,
    StepSucceeded,
)
from aura.projections.job import InvalidTransition, JobState, fold
from aura.store import StoreError
from aura.store.interface import open_event_store

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("job_id", metavar="JOB_ID", help="the job to replay")
    parser.add_argument(
        "--at", type=int, metavar="SEQ", help="show the state as it was at this seq"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_data_dir(parser)
    add_database_url(parser)


def run(args: argparse.Namespace) -> int:
    try:
        # the key saved in the folder over the environment's (mapping.redact also reads
        # OPENAI_API_KEY and AURA_TOKEN from the environment)
        base = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
        settings = with_saved(base, read_saved(args.data_dir))
    except AuraError as e:  # a malformed AURA_* variable, a settings file that cannot be read
        print(f"aura replay: {e} ({e.info.remediation})", file=sys.stderr)
        return 1
    try:
        records = asyncio.run(_read(settings, args.job_id))
        if not records:
            where = settings.database_url_shown or args.data_dir
            raise LookupError(f"no job {args.job_id!r} in {where}")
        if args.at is not None:
            records = [r for r in records if r.seq <= args.at]
            if not records:
                raise LookupError(f"job {args.job_id} has no event at or before seq {args.at}")
        state = fold(records)
    except (StoreError, LookupError, InvalidTransition) as e:
        print(f"aura replay: {e}", file=sys.stderr)
        return 1
    assert state is not None
    if args.json:
        print(_as_json(records, state, settings))
    else:
        print(redact(_as_text(records, state), settings))
    return 0


async def _read(settings: Settings, job_id: str) -> list[Recorded]:
    log = await open_event_store(settings.data_dir, settings.database_url, readonly=True)
    try:
        return await log.read(job_id)
    finally:
        await log.close()


def _summary(rec: Recorded) -> str:
    """The key fields of one event, for a timeline line."""
    match rec.event:
        case StepProgressed(pct=pct, eta_seconds=eta):
            return f"{pct:.0f}%" + ("" if eta is None else f" eta {eta:.1f}s")
        case StepSucceeded(artifacts=artifacts, duration_seconds=duration):
            names = ", ".join(a.name for a in artifacts)
            return f"{duration:.2f}s" + (f" -> {names}" if names else "")
        case StepSkipped(reason=reason):
            return reason
        case StepFailed(error=error) | JobFailed(error=error):
            return f"{error.code}: {error.message}"
        case JobWarning(code=code, message=message):
            return f"{code}: {message}"
        case JobRetryRequested(attempt=attempt, from_step=step):
            return f"attempt {attempt}" + (f" from {step}" if step else "")
        case JobSucceeded(output=output):
            return f"{output.video_path} ({output.size_bytes} bytes)"
        case OutputsPruned(files=files, size_bytes=size):
            return f"{files} files ({size} bytes) deleted"
        case _:
            return ""


def _as_text(records: list[Recorded], state: JobState) -> str:
    start = records[0].ts
    lines = [f"job {state.job_id}  preset {state.preset}  ({len(records)} events)", ""]
    lines.append(f"{'seq':>7} {'time':>9}  {'type':<19} {'step':<10} {'att':>3}  details")
    for rec in records:
        offset = (rec.ts - start).total_seconds()
        lines.append(
            f"{rec.seq:>7} {'+' + format(offset, '.3f'):>9}  {rec.type:<19} "
            f"{rec.event.step_name or '-':<10} {rec.event.attempt:>3}  {_summary(rec)}"
        )
    lines += ["", f"state at seq {state.last_seq}: {state.status.value}, attempt {state.attempt}"]
    for step in state.steps:
        lines.append(f"  {step.name:<10} {step.status.value:<10} {step.progress_pct:5.1f}%")
    if state.output is not None:
        lines.append(f"  output: {state.output.video_path}")
    for error in state.errors:
        lines.append(f"  error: {error.code}: {error.message}")
    for warning in state.warnings:
        lines.append(f"  warning: {warning.code}: {warning.message}")
    return "\n".join(lines)


def _as_json(records: list[Recorded], state: JobState, settings: Settings) -> str:
    events: list[dict[str, Any]] = [
        {
            "seq": rec.seq,
            "version": rec.version,
            "type": rec.type,
            "step": rec.event.step_name,
            "attempt": rec.event.attempt,
            "ts": rec.ts,
            "data": rec.event,
        }
        for rec in records
    ]
    shown = _redacted(msgspec.to_builtins({"events": events, "state": state}), settings)
    return msgspec.json.encode(shown).decode()


def _redacted(value: Any, settings: Settings) -> Any:
    """`value` (JSON-like) with the secrets redacted from each string, member names included."""
    if isinstance(value, str):
        return redact(value, settings)
    if isinstance(value, dict):
        return {_redacted(k, settings): _redacted(v, settings) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, settings) for v in value]
    return value
