"""Wall time of `aura sample` against the same commands run bare from a shell script.

First `aura sample` runs once with AURA_TRACE_COMMANDS set, which records every ffmpeg,
espeak-ng and ffprobe command it runs. Those commands become a shell script that runs them one
after another, writing straight to the final names (no temp files), with the two small text
files the engine writes itself (the title and the SRT) written by the script too. Then both
run REPEATS times, interleaved, each in a fresh folder; the medians and their ratio are
reported. Target: at most 1.10x (Python's start-up alone is about 0.3 s of a render of a few
seconds). Run: `python -m bench render`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from aura.engine.steps.mux import BURN_FILE, SOFT_FILE
from bench._common import REPEATS, fresh_dir, median
from bench._table import QUICK, figure

__all__ = ["main"]

TARGET = 1.10
#: a temp name of engine/atomic: `.video.aura-tmp-1a2b3c4d.mp4` -> `video.mp4`
_TEMP = re.compile(r"\.([\w-]+)\.aura-tmp-[0-9a-f]{8}(\.\w+)")
_AURA = [sys.executable, "-m", "aura.cli.main", "sample"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    return env | extra


def _cpu() -> float:
    """CPU seconds (user + system) used by this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_sample(data_dir: Path, trace: Path | None = None) -> tuple[float, float, Path]:
    """One `aura sample`, as a user runs it; (wall seconds, CPU seconds, the video's path)."""
    env = _env(AURA_TRACE_COMMANDS=str(trace)) if trace else _env()
    cpu, started = _cpu(), time.perf_counter()
    result = subprocess.run(
        [*_AURA, "--data-dir", str(data_dir)], capture_output=True, text=True, env=env, check=True
    )
    elapsed = time.perf_counter() - started
    return elapsed, _cpu() - cpu, Path(result.stdout.strip().splitlines()[-1])


def _script(trace: Path, job_dir: Path) -> str:
    """The traced commands as a shell script over `$WORK` instead of the job's folder."""
    lines = ["set -e", 'cd "$WORK"']
    for name in ("title.txt", "subtitles.srt", BURN_FILE, SOFT_FILE):  # the files Python writes
        if not (job_dir / name).exists():  # the burn and soft files follow options.subtitles
            continue
        text = (job_dir / name).read_text(encoding="utf-8")
        lines.append(f"printf '%s' {shlex.quote(text)} > {name}")
    for raw in trace.read_text(encoding="utf-8").splitlines():
        argv = [_TEMP.sub(r"\1\2", arg) for arg in json.loads(raw)["argv"]]
        argv = [arg.replace(str(job_dir), "$WORK") for arg in argv]
        quoted = " ".join(_quote_keeping_work(arg) for arg in argv)
        lines.append(f"{quoted} >/dev/null 2>&1")
    return "\n".join(lines) + "\n"


def _quote_keeping_work(arg: str) -> str:
    """Shell-quote `arg` but let `$WORK` expand."""
    if "$WORK" not in arg:
        return shlex.quote(arg)
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def _run_bare(script: Path, work: Path) -> tuple[float, float]:
    """One run of the bare script in `work`; (wall seconds, CPU seconds)."""
    work.mkdir(parents=True)
    cpu, started = _cpu(), time.perf_counter()
    subprocess.run(["sh", str(script)], env=_env(WORK=str(work)), check=True)
    return time.perf_counter() - started, _cpu() - cpu


def _record(out: Path) -> tuple[Path, tuple[float, float]]:
    """Run `aura sample` once with tracing; write the bare script; its path, and the run's wall
    and CPU seconds."""
    trace = out / "trace.jsonl"
    wall, cpu, video = _run_sample(out / "traced", trace)
    script = out / "bare.sh"
    script.write_text(_script(trace, video.parent), encoding="utf-8")
    return script, (wall, cpu)


def main() -> list[str]:
    out = fresh_dir("render")
    script, traced = _record(out)
    commands = sum(1 for _ in (out / "trace.jsonl").open()) if script.exists() else 0
    print(
        f"render: `aura sample` vs its {commands} commands run bare ({REPEATS} runs, interleaved)"
    )
    ours: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    for i in range(REPEATS):
        # quick: the traced run stands for ours (tracing costs little), one render less
        ours.append(traced if QUICK else _run_sample(out / f"ours-{i}")[:2])
        bare.append(_run_bare(script, out / f"bare-{i}"))
    ratio = median([w for w, _ in ours]) / median([w for w, _ in bare])
    cpu_ratio = median([c for _, c in ours]) / median([c for _, c in bare])
    verdict = "-" if QUICK else "PASS" if ratio <= TARGET else "ABOVE"
    ours_wall, bare_wall = median([w for w, _ in ours]), median([w for w, _ in bare])
    figure(
        "aura sample, wall", f"{ours_wall:.2f} s", f"bare {bare_wall:.2f} s", ratio, at_most=TARGET
    )
    figure(
        "aura sample, cpu (info)",
        f"{median([c for _, c in ours]):.2f} s",
        f"bare {median([c for _, c in bare]):.2f} s",
        cpu_ratio,
    )
    print(f"  aura sample  wall {_fmt(ours, 0)} s, cpu {_fmt(ours, 1)} s")
    print(f"  bare script  wall {_fmt(bare, 0)} s, cpu {_fmt(bare, 1)} s")
    print(f"  cpu-time ratio {cpu_ratio:.3f}x (steadier than wall time on a shared machine)")
    line = (
        f"render: aura sample {ours_wall:.2f} s vs bare commands "
        f"{bare_wall:.2f} s = {ratio:.3f}x (target <= {TARGET}x) {verdict}"
    )
    print(line, flush=True)
    return [line]


def _fmt(runs: list[tuple[float, float]], index: int) -> str:
    return " ".join(f"{run[index]:.2f}" for run in runs)


if __name__ == "__main__":
    main()
