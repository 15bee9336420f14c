"""`aura watch`'s live view: in place on a real terminal (a pty), a line per change otherwise."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import termios

from aura.cli.watch import Progress

COLUMNS = 40


def test_long_lines_are_clipped_so_redraws_stay_in_place() -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    job = {
        "status": "Running",
        "attempt": 1,
        "steps": [{"name": "render", "status": "Running", "progressPct": 0.0, "etaSeconds": None}],
    }
    with os.fdopen(follower, "w", encoding="utf-8") as out:
        progress = Progress(job, out)
        warning = {
            "type": "JobWarning",
            "code": "EncoderFallback",
            "message": "x" * 200,
            "attempt": 1,
        }
        progress.apply("job-warning", warning)
        progress.apply(
            "step-progress",
            {"type": "StepProgressed", "step": "render", "progressPct": 50.0, "etaSeconds": 3.0},
        )
        # two draws of three lines each; the terminal hands them over in its own time
        written = ""
        while written.count("\x1b[2K") < 6 or not written.endswith("\r\n"):
            ready, _, _ = select.select([leader], [], [], 10)
            assert ready, f"the terminal got only {written!r}"
            written += os.read(leader, 65536).decode()
    os.close(leader)
    rows = [re.sub(r"\x1b\[\d*[A-Za-z]", "", row) for row in written.split("\r\n")]
    assert rows[-1] == ""
    assert all(len(row) < COLUMNS for row in rows), rows
    assert "x" * 10 in written  # the note is still shown, clipped
    # each redraw goes up exactly the rows it drew before: 3 (job, step, note)
    assert written.count("\x1b[3F") == 1


def pending_mux(status: str, attempt: int) -> dict[str, object]:
    """A job as GET /api/jobs/{id} shows it, with one step, mux, not started."""
    mux = {"name": "mux", "status": "Pending", "progressPct": 0.0, "etaSeconds": None}
    return {"status": status, "attempt": attempt, "steps": [mux]}


def test_without_a_terminal_each_change_is_a_line_with_its_own_status() -> None:
    out = io.StringIO()
    progress = Progress(pending_mux("Running", attempt=1), out)
    progress.apply(
        "step-status", {"type": "StepStarted", "step": "mux", "status": "Running", "attempt": 1}
    )
    warning = {
        "type": "JobWarning",
        "code": "EncoderFallback",
        "message": "no GPU: x264",
        "attempt": 1,
    }
    progress.apply("job-warning", warning)
    progress.apply(
        "step-status", {"type": "StepSucceeded", "step": "mux", "status": "Succeeded", "attempt": 1}
    )
    assert out.getvalue().splitlines() == [
        "StepStarted mux: Running",
        "JobWarning: Running",
        "  warning EncoderFallback: no GPU: x264",
        "StepSucceeded mux: Succeeded",
    ]


def test_a_retried_jobs_earlier_attempt_is_not_shown() -> None:
    out = io.StringIO()
    progress = Progress(pending_mux("Queued", attempt=2), out)
    first = {"type": "StepFailed", "step": "mux", "status": "Failed", "attempt": 1}
    progress.apply(
        "step-error", first | {"error": {"code": "X", "message": "m", "remediation": "r"}}
    )
    progress.apply("step-progress", {"type": "StepProgressed", "step": "mux", "progressPct": 50.0})
    progress.apply("job-status", {"type": "JobRetryRequested", "status": "Queued", "attempt": 2})
    progress.apply(
        "step-status", {"type": "StepStarted", "step": "mux", "status": "Running", "attempt": 2}
    )
    assert out.getvalue().splitlines() == ["JobRetryRequested: Queued", "StepStarted mux: Running"]
    assert progress.notes == []
