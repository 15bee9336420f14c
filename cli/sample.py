"""`aura sample`: render the sample video in-process, with a live progress bar per step.

The job runs in this process through the Engine and is followed through the log's push
subscription, so the bars show exactly what the events say. Progress goes to stderr (redrawn in
place on a terminal, one line per step change otherwise); the last line on stdout is the path of
the finished video. Ctrl-C cancels the job cleanly (its ffmpeg is stopped, no temp file is left);
a second Ctrl-C stops at once ("aura: interrupted"). Either exits 130.

Ctrl-C is taken whatever this process inherited: started as a script's background job (`make
test &`, where the shell ignores SIGINT) or with SIGINT blocked, the press would otherwise be
lost (asyncio.run cancels the main task only over Python's default handler) and the render would
go on to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TextIO

from aura.cli.bars import Screen, bar
from aura.cli.main import add_data_dir, add_database_url
from aura.engine.config.inputs import JobRequest, Options
from aura.engine.config.settings import Settings
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import AuraError
from aura.projections.events import JobWarning, Recorded, StepEvent, StepProgressed
from aura.projections.job import JobState, JobStatus, StepState, apply
from aura.store.errors import StoreError

__all__ = ["Bars", "add_arguments", "run"]

EXIT_FAILED = 1
EXIT_CANCELED = 130


def add_arguments(parser: argparse.ArgumentParser, command_name: str) -> None:
    parser.add_argument(
        "--quality",
        choices=("draft", "balanced", "high"),
        default="balanced",
        help="render quality",
    )
    parser.add_argument(
        "--encoder", choices=("auto", "x264", "nvenc"), default="auto", help="H.264 encoder"
    )
    add_data_dir(parser)
    add_database_url(parser)


def run(args: argparse.Namespace) -> int:
    request = JobRequest(options=Options(quality=args.quality, encoder=args.encoder))
    _take_ctrl_c()
    try:
        settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
        return asyncio.run(render(settings, request, sys.stderr, sys.stdout))
    except AuraError as e:  # a malformed AURA_* variable, a data folder that cannot be created
        print(f"aura sample: {e} ({e.info.remediation})", file=sys.stderr)
        return 1
    except StoreError as e:  # the folder is in use, or its log cannot be opened
        print(f"aura sample: {e}", file=sys.stderr)
        return 1


def _take_ctrl_c() -> None:
    """Let Ctrl-C reach asyncio.run (which cancels the render on the first press and raises
    KeyboardInterrupt on the second), whatever SIGINT's disposition and mask were inherited.
    Before asyncio.run: threads started later (the log's) inherit the unblocked mask."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


async def render(settings: Settings, request: JobRequest, err: TextIO, out: TextIO) -> int:
    """Submit the job, draw its progress until it ends; the exit status of `aura sample`."""
    # Other jobs in the data folder are left alone: `aura serve` resumes them.
    engine = await Engine.open(settings, recover=False)
    try:
        job = (await engine.submit(request)).job
        bars = Bars(err)
        try:
            state = await follow(engine, job.job_id, bars)
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
            print("\ncanceling...", file=err, flush=True)
            state = await _cancel(engine, job.job_id)
        return _report(state, err, out)
    finally:
        await engine.close()


async def follow(engine: Engine, job_id: str, bars: Bars) -> JobState:
    """Draw every event of the job from the log until it reaches a terminal state."""
    state: JobState | None = None
    async for rec in engine.log.subscribe(job_id=job_id):
        state = apply(state, rec)
        bars.show(state, rec)
        if state.is_terminal:
            break
    assert state is not None
    return state


async def _cancel(engine: Engine, job_id: str) -> JobState:
    try:
        return await engine.cancel(job_id)
    except AuraError:  # it ended meanwhile
        return await engine.get(job_id)


def _report(state: JobState, err: TextIO, out: TextIO) -> int:
    if state.status == JobStatus.SUCCEEDED and state.output is not None:
        output = state.output
        print(f"done: {output.size_bytes} bytes, {output.duration_seconds:.1f} s", file=err)
        print(output.video_path, file=out, flush=True)
        return 0
    for error in state.errors[-1:]:
        print(f"{state.status}: {error.code}: {error.message}", file=err)
        print(f"  remediation: {error.remediation}", file=err)
        print(f"  correlation id: {error.correlation_id}", file=err)
    if state.status == JobStatus.CANCELED:
        print("canceled", file=err, flush=True)
        return EXIT_CANCELED
    return EXIT_FAILED


class Bars:
    """One bar per step: redrawn in place on a terminal, one line per step change otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.screen = Screen(out)

    def show(self, state: JobState, rec: Recorded) -> None:
        event = rec.event
        if isinstance(event, JobWarning):
            self.screen.line(f"warning {event.code}: {event.message}")
        if self.screen.tty:
            self.screen.redraw([_bar(step) for step in state.steps])
        elif isinstance(event, StepEvent) and not isinstance(event, StepProgressed):
            self.screen.line(_bar(state.step(event.step)))


def _bar(step: StepState) -> str:
    return bar(step.name, step.status, step.progress_pct, step.eta_seconds)
