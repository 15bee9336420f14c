"""Every benchmark runs to its end in quick mode (token sizes, no target judged), so a benchmark
cannot break unnoticed between two `make bench` runs: `python -m bench --quick`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aura.bench.__main__ import available

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(660)  # the run's own bound below comes first
def test_every_benchmark_runs_to_the_end_in_quick_mode() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    table = run.stdout.split("=== every figure (quick: token sizes, no target judged) ===\n")[1]
    rows = [line.split()[0] for line in table.splitlines()[2:]]
    assert set(rows) == set(available()), table  # every benchmark has figures
    assert "FAILED" not in table and "PASS" not in table and "MISS" not in table, table
