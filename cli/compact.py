"""`aura compact --older-than DURATION`: shrink the log while no server runs.

Writes a copy of the log without the progress ticks of jobs that ended more than DURATION ago
and swaps it in (aura.store.compact); with `--prune-outputs` it first deletes those jobs' work
folders, recording `OutputsPruned` for each (aura.engine.files.pruning). It takes the data
folder's lock, so it refuses (exit 3) while a server or another Aura process holds the folder.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aura.cli.main import add_data_dir, folder_in_use, sqlite_only
from aura.engine.config.settings import Settings
from aura.engine.errors.taxonomy import AuraError
from aura.engine.files.folder_lock import FolderInUse, FolderLock
from aura.engine.files.pruning import Pruned, prune_outputs
from aura.store import DB_FILE_NAME, Durability, EventLog, StoreError
from aura.store.compact import Compaction, LogInUse, compact

__all__ = ["EXIT_IN_USE", "add_arguments", "parse_duration", "run"]

#: exit status when the data folder or its log is in use by another process
EXIT_IN_USE = 3
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `45m`, `90s`, `2w`, `0s` (argparse prints the error)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a number and a unit, s, m, h, d or w (30d, 12h, 0s)"
        )
    try:
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than any log's age") from None


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_data_dir(parser)
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="compact the jobs that ended more than this long ago (30d, 12h, 0s)",
    )
    parser.add_argument(
        "--prune-outputs",
        action="store_true",
        help="also delete those jobs' work folders (output and artifacts); "
        "each job then shows outputPrunedUtc",
    )


def run(args: argparse.Namespace) -> int:
    refusal = sqlite_only("compact")
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    data_dir: Path = args.data_dir
    db_path = data_dir / DB_FILE_NAME
    if not db_path.is_file():
        print(f"aura compact: no log at {db_path}", file=sys.stderr)
        return 1
    try:
        settings = Settings.from_env(data_dir=data_dir)
    except AuraError as e:
        print(f"aura compact: {e} ({e.info.remediation})", file=sys.stderr)
        return 1
    lock = FolderLock(data_dir)
    try:
        lock.acquire()
    except FolderInUse as e:
        then = "compact (the log's file is swapped for the compacted copy: it needs the folder)"
        print(folder_in_use("compact", e, then), file=sys.stderr)
        return EXIT_IN_USE
    pruned = None
    try:
        ended_before = _cutoff(args.older_than)
        pruned = asyncio.run(_prune(settings, ended_before)) if args.prune_outputs else None
        done = compact(db_path, ended_before)
    except LogInUse as e:
        if pruned is not None:  # done and recorded before the swap was refused: say so
            print(_pruned_line(pruned))
        print(f"aura compact: {e}", file=sys.stderr)
        return EXIT_IN_USE
    except StoreError as e:
        print(f"aura compact: {e}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    print(_summary(done, pruned))
    return 0


def _cutoff(older_than: timedelta) -> datetime:
    """Now less `older_than`, or the earliest time there is (every ended job is older)."""
    try:
        return datetime.now(UTC) - older_than
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


async def _prune(settings: Settings, ended_before: datetime) -> Pruned:
    # FULL: each OutputsPruned is on disk before its files are deleted
    log = await EventLog.open(settings.data_dir, durability=Durability.FULL)
    try:
        return await prune_outputs(log, settings, ended_before)
    finally:
        await log.close()


def _summary(done: Compaction, pruned: Pruned | None) -> str:
    lines = [
        f"events: {done.events_before:,} -> {done.events_after:,} "
        f"({done.events_before - done.events_after:,} progress ticks of "
        f"{done.jobs_compacted:,} jobs left out)",
        f"log size: {_size(done.bytes_before)} -> {_size(done.bytes_after)}",
    ]
    if pruned is not None:
        lines.append(_pruned_line(pruned))
    return "\n".join(lines)


def _pruned_line(pruned: Pruned) -> str:
    return (
        f"outputs pruned: {pruned.jobs:,} jobs ({pruned.files:,} files, {_size(pruned.size_bytes)})"
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
