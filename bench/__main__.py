"""Run every benchmark module's `main()` in turn, or only those named: `python -m bench append`.

A benchmark is a module of this package whose name does not start with an underscore and that
defines `main()`. Known ones run in the order below; any others follow alphabetically.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
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
    unknown = [name for name in wanted if name not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}")
        return 2
    package = __spec__.parent if __spec__ is not None and __spec__.parent else "bench"
    for name in wanted or names:
        module = importlib.import_module(f"{package}.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        started = time.perf_counter()
        print(f"=== bench {name} ===", flush=True)
        run()
        print(f"=== {name}: {time.perf_counter() - started:.1f} s ===\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
