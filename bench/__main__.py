"""Run every benchmark module's `main()` in turn, or only those named: `python -m bench append`;
then print one table of every figure. `--quick` runs each at a token size and judges nothing
(`make test` does, so a benchmark cannot break unnoticed).

A benchmark is a module of this package whose name does not start with an underscore and that
defines `main()`. Known ones run in the order below; any others follow alphabetically. One that
fails is reported in the table and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

__all__ = ["available", "main"]

#: the order `python -m bench` runs the benchmarks it finds in
ORDER = ("append", "replay", "render", "orchestration", "sse")


def available() -> list[str]:
    """The benchmark modules present in this folder, in running order."""
    found = {
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not info.name.startswith("_")
    }
    known = [name for name in ORDER if name in found]
    return known + sorted(found - set(known))


def main(argv: list[str] | None = None) -> int:
    names = available()
    wanted = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in wanted:
        wanted.remove("--quick")
        os.environ["AURA_BENCH_QUICK"] = "1"  # before any benchmark reads its sizes
    unknown = [name for name in wanted if name not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}")
        return 2
    package = __spec__.parent if __spec__ is not None and __spec__.parent else "bench"
    table = importlib.import_module(f"{package}._table")
    failed = False
    for name in wanted or names:
        module = importlib.import_module(f"{package}.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        started = time.perf_counter()
        print(f"=== bench {name} ===", flush=True)
        table.begin(name)
        try:
            run()
        except Exception as e:  # the others still run; the table says which failed
            traceback.print_exc()
            table.figure("(the benchmark)", f"FAILED: {type(e).__name__}: {e}"[:120], passed=False)
            failed = True
        print(f"=== {name}: {time.perf_counter() - started:.1f} s ===\n", flush=True)
    quick = " (quick: token sizes, no target judged)" if table.QUICK else ""
    print(f"=== every figure{quick} ===\n{table.table()}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
