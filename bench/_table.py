"""The one table `python -m bench` ends with: every figure, what it was measured against in the
same run, their ratio, the target and its verdict.

A benchmark calls `figure()` for each result it judges (or shows for information); the runner
names the benchmark (`begin`) and prints the table (`table`). In quick mode (`--quick`, run by
`make test` so no benchmark breaks unnoticed) sizes are token ones and no target is judged.
"""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["QUICK", "Figure", "begin", "figure", "figures", "table"]

#: `python -m bench --quick`: every case at a token size, no verdict
QUICK = os.environ.get("AURA_BENCH_QUICK") == "1"


class Figure(NamedTuple):
    bench: str
    case: str
    value: str  # ours, with its unit
    against: str  # the floor or peer of the same run, with its unit
    ratio: str
    target: str
    verdict: str  # PASS, MISS, "info", or "-" in quick mode


_figures: list[Figure] = []
_bench = ""


def begin(bench: str) -> None:
    """Figures from now on are `bench`'s."""
    global _bench
    _bench = bench


def figure(
    case: str,
    value: str,
    against: str = "",
    ratio: float | None = None,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    passed: bool | None = None,
    target: str = "",
) -> None:
    """Record one result. `ratio` is judged against `at_least` or `at_most` (as `Nx`); a target
    of another kind is given as `target` text with its outcome `passed`. None of them: info."""
    if at_least is not None and ratio is not None:
        target, passed = f">= {at_least:g}x", ratio >= at_least
    elif at_most is not None and ratio is not None:
        target, passed = f"<= {at_most:g}x", ratio <= at_most
    verdict = "info" if passed is None else ("PASS" if passed else "MISS")
    shown = "" if ratio is None else f"{ratio:.2f}x"
    _figures.append(
        Figure(_bench, case, value, against, shown, target or "-", "-" if QUICK else verdict)
    )


def figures() -> list[Figure]:
    return list(_figures)


def table() -> str:
    """Every figure recorded, one row each, columns aligned."""
    rows = [Figure._fields, *_figures]
    widths = [max(len(row[i]) for row in rows) for i in range(len(Figure._fields))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
