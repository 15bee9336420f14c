"""A standalone engine process: `python -m aura.engine.run.worker --data-dir DIR`.

It opens the engine on the data folder (recovering what the log shows as active), optionally
submits one job, and runs until SIGTERM/SIGINT (or, with --exit-when-idle, until nothing is
queued or running). It prints one JSON object per line on stdout: `{"ready": ...}` once open
(with the recovered job ids and its pid), `{"submitted": JOB_ID}`, and `{"idle": true}` before an
idle exit. The crash-recovery tests SIGKILL it mid-render and start it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aura.engine.config.inputs import decode_request
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.run.context import Step

__all__ = ["main", "serve"]


def _say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


def _pipeline(spec: str | None) -> Mapping[str, Step] | None:
    """`module:attribute` naming a pipeline mapping; None for the render pipeline."""
    if spec is None:
        return None
    module_name, _, attr = spec.partition(":")
    pipeline: Mapping[str, Step] = getattr(importlib.import_module(module_name), attr)
    return pipeline


async def _wait(event: asyncio.Event) -> object:
    return await event.wait()


async def _idle(engine: Engine) -> object:
    await engine.run_until_idle()
    return None


async def serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env(data_dir=args.data_dir, on_interrupted=args.on_interrupted)
    engine = await Engine.open(settings, pipeline=_pipeline(args.pipeline))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        _say(ready=True, pid=os.getpid(), recovered=engine.recovered)
        if args.submit is not None:
            request = decode_request(args.submit.encode())
            submitted = await engine.submit(request, idempotency_key=args.idempotency_key)
            _say(submitted=submitted.job.job_id, duplicate=submitted.duplicate)
        waiters: list[asyncio.Task[object]] = [asyncio.create_task(_wait(stop))]
        if args.exit_when_idle:
            waiters.append(asyncio.create_task(_idle(engine)))
        _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not stop.is_set():
            _say(idle=True)
    finally:
        await engine.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aura.engine.run.worker", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--submit", metavar="JSON", help="submit this job request at start")
    parser.add_argument("--idempotency-key")
    parser.add_argument(
        "--pipeline", metavar="MODULE:ATTR", help="a pipeline other than the render"
    )
    parser.add_argument("--on-interrupted", choices=("resume", "fail"))
    parser.add_argument("--exit-when-idle", action="store_true")
    args = parser.parse_args(argv)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
