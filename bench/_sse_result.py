"""One SSE run's result (bench/sse.py, bench/_sse_render.py): the client processes' reports
merged, and the line that prints the runs of one side."""

from __future__ import annotations

from typing import Any

import msgspec

from ._common import median

__all__ = ["Result", "merge", "result_line"]


class Result(msgspec.Struct):
    received: int
    lost: int
    append_p50: float
    append_p99: float
    sched_p50: float
    sched_p99: float
    rate: float


def merge(outputs: list[dict[str, Any]], elapsed: float) -> Result:
    append = sorted(x for o in outputs for x in o["append"])
    sched = sorted(x for o in outputs for x in o["sched"])

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")

    received = len(append)
    return Result(
        received=received,
        lost=sum(o["lost"] for o in outputs),
        append_p50=pct(append, 0.50),
        append_p99=pct(append, 0.99),
        sched_p50=pct(sched, 0.50),
        sched_p99=pct(sched, 0.99),
        rate=received / elapsed,
    )


def result_line(label: str, results: list[Result]) -> str:
    def m(field: str) -> float:
        return median([getattr(r, field) for r in results])

    return (
        f"  {label:<6} append->receipt p50 {m('append_p50'):7.2f} ms  p99 {m('append_p99'):7.2f} ms"
        f" | scheduled->receipt p50 {m('sched_p50'):7.2f} ms  p99 {m('sched_p99'):7.2f} ms"
        f" | {m('rate'):8,.0f} ev/s delivered | lost {max(r.lost for r in results)}"
    )
