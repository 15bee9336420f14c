"""`aura`: one entry point; each subcommand lives in its own module under aura.cli."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aura.engine.files.folder_lock import FolderInUse

__all__ = ["add_data_dir", "add_database_url", "folder_in_use", "main", "sqlite_only"]

#: subcommand -> (module that defines `add_arguments(parser)` and `run(args) -> int`, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("aura.cli.serve", "run the HTTP server (API, live streams)"),
    "worker": ("aura.cli.worker", "run jobs from a PostgreSQL log, with no HTTP (see serve)"),
    "sample": ("aura.cli.sample", "render the sample video in-process with live progress"),
    "submit": ("aura.cli.client", "submit a job to a running server"),
    "watch": ("aura.cli.client", "follow a job's progress live from a running server"),
    "retry": ("aura.cli.client", "retry a failed or canceled job from its failed step"),
    "rerun": ("aura.cli.client", "start a new job with the same inputs"),
    "cancel": ("aura.cli.client", "cancel a queued or running job"),
    "replay": ("aura.cli.replay", "print a job's timeline and state from the log"),
    "doctor": ("aura.cli.doctor", "check this machine: tools, output folder, log, disk, GPU, keys"),
    "backup": ("aura.cli.backup", "copy the log consistently, even while a server runs"),
    "compact": ("aura.cli.compact", "shrink the log of old jobs' progress ticks (server stopped)"),
    "migrate": ("aura.cli.migrate", "copy the SQLite log into PostgreSQL (server stopped)"),
}


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """The data folder option every subcommand that touches the data folder takes."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("AURA_DATA_DIR", "./data")),
        help="data folder (default: $AURA_DATA_DIR or ./data)",
    )


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """The log's PostgreSQL database, for the subcommands that open the log (the data folder
    still holds the machine's settings, logs and lock)."""
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default=None,
        help="keep the log in this PostgreSQL database, postgresql://USER@HOST:PORT/DB "
        "(default: $AURA_DATABASE_URL, else aura.db in the data folder)",
    )


def folder_in_use(command: str, error: FolderInUse, then: str) -> str:
    """Why `aura COMMAND`, which needs the data folder to itself, refuses to run: another Aura
    process holds it; `then` says what to do once it is stopped, and why."""
    return (
        f"aura {command}: the data folder {error.data_dir} is in use by another Aura process "
        f"(pid {error.holder}), such as `aura serve`: stop it, then {then}"
    )


def sqlite_only(command: str) -> str | None:
    """Why `aura COMMAND`, which works on the data folder's SQLite log, refuses to run: the log
    is in PostgreSQL (AURA_DATABASE_URL is set); None when it is not."""
    if not os.environ.get("AURA_DATABASE_URL"):
        return None
    return (
        f"aura {command}: AURA_DATABASE_URL is set, so the log is in PostgreSQL, and "
        f"`aura {command}` works on the data folder's SQLite log only; use PostgreSQL's own "
        "tools (pg_dump for a backup: see docs/operations.md), or unset AURA_DATABASE_URL"
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported (start-up stays fast)."""
    parser = argparse.ArgumentParser(
        prog="aura", description="Aura jobs engine: render narrated videos and watch every step."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser, name)
            command_parser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("aura: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`aura replay ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush
        return 141  # as a shell reports a command ended by SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
