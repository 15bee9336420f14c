"""`aura serve` with each append timed: the server bench/load.py measures.

`python -m bench._load_server TIMES_FILE serve ARGS...` runs the CLI as it is, with
`GroupCommit.append_nowait` wrapped: every append the server makes (the renders' progress and
transitions, submissions) is timed from its call to the moment its future is done (committed,
its subscribers told, its appender free to go on), and the seconds are written to TIMES_FILE as a
JSON list once the server has stopped. The wrapper adds one `perf_counter` and one done callback
per append.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aura.cli.main import main as aura_main
from aura.projections.events import Event
from aura.store.batch import QueuedAppend
from aura.store.group_commit import GroupCommit

__all__ = ["main"]

_seconds: list[float] = []


def _timed(original: Any) -> Any:
    def append_nowait(
        self: GroupCommit,
        job_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        after: QueuedAppend | None = None,
    ) -> QueuedAppend:
        started = time.perf_counter()
        queued: QueuedAppend = original(self, job_id, events, expected_version, after=after)
        queued.future.add_done_callback(lambda _: _seconds.append(time.perf_counter() - started))
        return queued

    return append_nowait


def main(argv: list[str]) -> int:
    times_file, *serve = argv
    GroupCommit.append_nowait = _timed(GroupCommit.append_nowait)  # type: ignore[method-assign]
    code = aura_main(serve)
    Path(times_file).write_text(json.dumps(_seconds))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
