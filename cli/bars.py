"""Progress bars for `aura sample` and `aura watch`: one line per step, redrawn in place on a
terminal."""

from __future__ import annotations

import os
from typing import TextIO

from aura.projections.status import DONE_STEP_STATUSES, StepStatus

__all__ = ["BAR_WIDTH", "Screen", "bar"]

#: characters between a bar's brackets
BAR_WIDTH = 24


def bar(name: str, status: str, pct: float, eta: float | None) -> str:
    """`broll      [############............]  52.0% Running eta 3s`; a step done shows 100%."""
    if status in DONE_STEP_STATUSES:
        pct = 100.0
    filled = int(BAR_WIDTH * min(max(pct, 0.0), 100.0) / 100)
    eta_text = f" eta {eta:.0f}s" if eta is not None and status == StepStatus.RUNNING else ""
    shown = "#" * filled + "." * (BAR_WIDTH - filled)
    return f"{name:<10} [{shown}] {pct:5.1f}% {status}{eta_text}"


class Screen:
    """Lines written to `out`; on a terminal a redraw replaces the lines drawn last."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        #: rows the last redraw wrote, which the next one goes up over
        self.drawn = 0

    def redraw(self, lines: list[str]) -> None:
        """Replace the lines drawn last with `lines` (on a terminal)."""
        # one row each: a line that wrapped would make the next redraw go up too few rows
        width = _columns(self.out)
        lines = [line if len(line) < width else line[: width - 4] + "..." for line in lines]
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self.drawn = len(lines)

    def line(self, text: str) -> None:
        """Write `text` as a line of its own, kept: the next redraw starts below it."""
        self.out.write(text + "\n")
        self.out.flush()
        self.drawn = 0


def _columns(out: TextIO) -> int:
    try:
        return max(os.get_terminal_size(out.fileno()).columns, 20)
    except (OSError, ValueError):  # not a terminal after all: a common width
        return 80
