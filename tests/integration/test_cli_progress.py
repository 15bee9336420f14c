"""`aura watch`'s live view on a real terminal (a pty): each line stays on one row."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import termios

from aura.cli.client import Progress

COLUMNS = 40


def test_long_lines_are_clipped_so_redraws_stay_in_place() -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    job = {
        "status": "Running",
        "steps": [{"name": "render", "status": "Running", "progressPct": 0.0, "etaSeconds": None}],
    }
    with os.fdopen(follower, "w", encoding="utf-8") as out:
        progress = Progress(job, out)
        warning = {"type": "JobWarning", "code": "EncoderFallback", "message": "x" * 200}
        progress.apply("job-warning", warning)
        progress.apply(
            "step-progress",
            {"type": "StepProgressed", "step": "render", "progressPct": 50.0, "etaSeconds": 3.0},
        )
        written = os.read(leader, 65536).decode()
    os.close(leader)
    rows = [re.sub(r"\x1b\[\d*[A-Za-z]", "", row) for row in written.split("\r\n")]
    assert rows[-1] == ""
    assert all(len(row) < COLUMNS for row in rows), rows
    assert "x" * 10 in written  # the note is still shown, clipped
    # each redraw goes up exactly the rows it drew before: 3 (job, step, note)
    assert written.count("\x1b[3F") == 1
