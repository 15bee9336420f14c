"""`aura migrate --database-url postgresql://...`: copy the data folder's SQLite log into an
empty PostgreSQL database, with the server stopped.

Every event keeps its seq, version, timestamp, type and data; the job list is folded from the
copy; both are checked against the log before one commit (aura.store.pg.migrate). It takes the
data folder's lock, so it refuses (exit 3) while a server or another Aura process holds the
folder. `--verify` compares a database migrated earlier with the log instead, changing nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from aura.cli.compact import EXIT_IN_USE
from aura.cli.main import add_data_dir, folder_in_use
from aura.engine.config.settings import database_url_without_password
from aura.engine.files.folder_lock import FolderInUse, FolderLock
from aura.store import DB_FILE_NAME, StoreError
from aura.store.interface import is_database_url
from aura.store.pg.migrate import LogsDiffer, LogSummary, TargetNotEmpty, compare_logs, copy_log

__all__ = ["EXIT_DIFFERS", "EXIT_NOT_EMPTY", "add_arguments", "run"]

#: exit status when the database already holds events (and --verify was not given)
EXIT_NOT_EMPTY = 4
#: exit status when the check finds the database's log differs from the data folder's
EXIT_DIFFERS = 5


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_data_dir(parser)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("AURA_DATABASE_URL"),
        metavar="URL",
        help="the PostgreSQL database to copy the log into, postgresql://... "
        "(default: $AURA_DATABASE_URL)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare a database migrated earlier with the log (counts, last seq, checksum) "
        "instead of copying; changes nothing",
    )


def run(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    db_path = data_dir / DB_FILE_NAME
    url: str | None = args.database_url
    if not url or not is_database_url(url):
        print(
            "aura migrate: give the target database as --database-url postgresql://... "
            "(or AURA_DATABASE_URL)",
            file=sys.stderr,
        )
        return 2
    if not db_path.is_file():
        print(f"aura migrate: no log at {db_path}", file=sys.stderr)
        return 1
    lock = FolderLock(data_dir)
    try:
        lock.acquire()
    except FolderInUse as e:
        then = "migrate (an append during the copy would be left behind)"
        print(folder_in_use("migrate", e, then), file=sys.stderr)
        return EXIT_IN_USE
    try:
        work = compare_logs if args.verify else copy_log
        source, target = asyncio.run(work(db_path, url))
    except TargetNotEmpty as e:
        print(
            f"aura migrate: {e} ({database_url_without_password(url)}); "
            "to check an earlier migration, add --verify",
            file=sys.stderr,
        )
        return EXIT_NOT_EMPTY
    except LogsDiffer as e:
        print(f"aura migrate: {e}", file=sys.stderr)
        return EXIT_DIFFERS
    except StoreError as e:
        print(f"aura migrate: {e}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    print(_summary(source, target, url, verified_only=args.verify))
    return 0


def _summary(source: LogSummary, target: LogSummary, url: str, *, verified_only: bool) -> str:
    action = "verified: the same" if verified_only else "migrated:"
    where = "in" if verified_only else "into"
    return "\n".join(
        [
            f"{action} {_counted(source.events, 'event')}, last seq {source.last_seq:,}, "
            f"{where} {database_url_without_password(url)}",
            f"job list: {_counted(target.jobs, 'job')}",
            f"checksum (both sides): {target.checksum}",
        ]
    )


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
