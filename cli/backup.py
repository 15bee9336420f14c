"""`aura backup DEST`: a consistent copy of the log, safe while a server runs.

Needs no lock: the copy is one snapshot taken with SQLite's online backup API
(aura.store.backup). Restoring is a file copy with the server stopped (docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aura.cli.main import add_data_dir, sqlite_only
from aura.store import DB_FILE_NAME, StoreError
from aura.store.backup import backup

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("dest", metavar="DEST", type=Path, help="the backup file to write")
    parser.add_argument("--force", action="store_true", help="replace DEST if it exists")
    add_data_dir(parser)


def run(args: argparse.Namespace) -> int:
    refusal = sqlite_only("backup")
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    try:
        done = backup(args.data_dir / DB_FILE_NAME, args.dest, force=args.force)
    except FileExistsError as e:
        print(f"aura backup: {e}", file=sys.stderr)
        return 2
    except StoreError as e:
        print(f"aura backup: {e}", file=sys.stderr)
        return 1
    print(
        f"backed up {done.events:,} events (up to seq {done.last_seq}), "
        f"{done.size_bytes:,} bytes, to {args.dest}; integrity_check ok"
    )
    return 0
