"""`aura worker`: run jobs from a PostgreSQL log, serving no HTTP.

Any number of workers, on any number of machines, share the log's queue: each claims Queued (or
interrupted) jobs through leases up to AURA_MAX_CONCURRENT_JOBS at once, renews them every third
of AURA_LEASE_SECONDS, and gives a job up when its lease is lost (aura.engine.run.leased_runner).
`aura serve --no-worker` serves the API and the streams. The data folder (`--data-dir`) is this
machine's own: its settings, logs, lock and worker id; the jobs' files live in
AURA_ARTIFACTS_DIR, a folder every worker reaches (default: the data folder's jobs/).

Prints one line once running, and stops cleanly on SIGINT or SIGTERM: its runs stop (their
processes killed), their leases are released, and another worker resumes them at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from aura.cli.main import add_data_dir, add_database_url
from aura.cli.serve import add_log_arguments, start_logging
from aura.engine.config.logs import Logs
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import AuraError
from aura.engine.run.leased_runner import LeasedRunner
from aura.store.errors import StoreError

__all__ = ["add_arguments", "run", "work"]


def add_arguments(parser: argparse.ArgumentParser, command_name: str) -> None:
    add_data_dir(parser)
    add_database_url(parser)
    add_log_arguments(parser)


def run(args: argparse.Namespace) -> int:
    logs: Logs | None = None
    try:
        settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
        if settings.database_url is None:
            print(
                "aura worker: workers share a log in PostgreSQL: give --database-url or "
                "AURA_DATABASE_URL (on the data folder's SQLite log, `aura serve` runs the jobs)",
                file=sys.stderr,
            )
            return 2
        logs = start_logging(args, settings)
        asyncio.run(work(settings))
    except AuraError as e:  # a malformed AURA_* variable, a data folder that cannot be created
        print(f"aura worker: {e} ({e.info.remediation})", file=sys.stderr)
        return 1
    except StoreError as e:  # the folder is in use, or the log cannot be opened
        print(f"aura worker: {e}", file=sys.stderr)
        return 1
    finally:
        if logs is not None:
            logs.close()
    return 0


async def work(settings: Settings) -> None:
    """Run jobs until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with await Engine.open(settings) as engine:
        runner = engine.runner
        worker_id = runner.worker_id if isinstance(runner, LeasedRunner) else "?"
        print(
            f"Aura worker {worker_id} is running (pid {os.getpid()}, data in "
            f"{settings.data_dir}, files in {settings.jobs_dir}, log in "
            f"{settings.database_url_shown})",
            flush=True,
        )
        await stop.wait()
        print("Aura worker: stopping", flush=True)
