"""The curl examples of the docs, run as written against a real `aura serve`: an example that
names a status (`# 415`) gets it; any other is not refused as malformed or unknown (no 400, 404,
405, 413, 415, 5xx): a 409 for cancelling a finished job is an answer, a wrong path is a defect."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

from aura.tests.e2e.raw_http import Served, aura_serve

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOC_HOST = "http://127.0.0.1:8765"
#: a status no example should get unless it says so: the request itself is wrong
REFUSED = {400, 404, 405, 413, 415}
TOKEN = "docs-example-token-0123456789abcdef"

# Runs the real curl, keeping each answer's head under the number of the command that asked.
CURL_SHIM = """#!/bin/sh
n=$(ls "$AURA_DOCS_HEADS" | grep -c "^$AURA_DOCS_STEP\\.")
exec {curl} --max-time 3 --dump-header "$AURA_DOCS_HEADS/$AURA_DOCS_STEP.$n" "$@"
"""


class Example(NamedTuple):
    where: str  # file:line
    command: str  # with its continuation lines joined
    status: int | None  # what its trailing comment says it answers


class Block(NamedTuple):
    """A bash/sh block of the docs: what it runs (a server it starts is the test's), and its
    commands that call curl."""

    script: list[str]
    examples: list[Example]


def shell_blocks(path: Path) -> list[Block]:
    """Each bash/sh block of `path` that runs curl."""
    blocks: list[Block] = []
    block: Block | None = None
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = line.strip()
        if fence.startswith("```"):
            if block and block.examples:
                blocks.append(block)
            block = Block([], []) if fence in ("```bash", "```sh") else None
            continue
        if block is None:
            continue
        if not pending:
            start = number
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if not complete(pending):  # a quoted body spans lines
            pending += "\n"
            continue
        command, pending = pending, ""
        if command.startswith(("aura ", "export AURA_TOKEN=")):
            continue  # the test runs the server
        if "curl " in command:
            said = re.search(r"#\s*(\d{3})\b", command)
            example = Example(f"{path.name}:{start}", command, int(said[1]) if said else None)
            block.script.append(f"export AURA_DOCS_STEP={len(block.examples)}")
            block.examples.append(example)
        block.script.append(command)
    return blocks


def complete(command: str) -> bool:
    """Whether `command` closes every quote it opens."""
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return False
    return True


BLOCKS = [block for path in DOCS for block in shell_blocks(path)]


def test_the_docs_have_curl_examples_of_every_kind() -> None:
    examples = [example for block in BLOCKS for example in block.examples]
    assert len(examples) >= 15, examples
    assert {e.status for e in examples} >= {None, 206, 403, 415}


def finished_sample(base: str) -> str:
    """A sample job's id, once it has ended Succeeded."""
    request = urllib.request.Request(
        f"{base}/api/jobs",
        data=json.dumps({"preset": "sample-hello-youtube"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        job_id: str = json.load(answer)["jobId"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/jobs/{job_id}", timeout=10) as answer:
            state = json.load(answer)["status"]
        if state not in ("Queued", "Running"):
            assert state == "Succeeded", state
            return job_id
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end within 120 s")


def test_every_curl_example_gets_the_answer_it_shows(tmp_path: Path) -> None:
    shim = tmp_path / "bin" / "curl"
    shim.parent.mkdir()
    curl = shutil.which("curl")
    assert curl, "curl is not installed (make setup installs it)"
    shim.write_text(CURL_SHIM.format(curl=curl))
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    failures: list[str] = []
    # the examples that use a token go to a server that has one; the others to one without
    with (
        aura_serve(tmp_path / "data") as plain,
        aura_serve(tmp_path / "tokened", AURA_TOKEN=TOKEN) as tokened,
    ):
        job_id = finished_sample(f"http://127.0.0.1:{plain.port}")
        for number, block in enumerate(BLOCKS):
            served = tokened if "AURA_TOKEN" in "".join(block.script) else plain
            heads = tmp_path / "heads" / str(number)
            heads.mkdir(parents=True)
            run_block(block, served, job_id, heads, shim.parent)
            failures += wrong_answers(block, heads)
    assert failures == []


def run_block(block: Block, served: Served, job_id: str, heads: Path, shims: Path) -> None:
    """Run `block` against `served`, as its reader would against the docs' server."""
    base = f"http://127.0.0.1:{served.port}"
    script = "\n".join(block.script).replace(DOC_HOST, base).replace("http://server:8765", base)
    env = os.environ | {
        "PATH": f"{shims}:{os.environ['PATH']}",
        "AURA_DOCS_HEADS": str(heads),
        "JOB": job_id,
        "AURA_TOKEN": TOKEN,
    }
    script = script.replace("JOB_ID", job_id)
    subprocess.run(["bash", "-c", script], cwd=heads, env=env, capture_output=True, timeout=60)


def wrong_answers(block: Block, heads: Path) -> list[str]:
    """The examples of `block` that asked nothing, or got an answer they do not show."""
    wrong = []
    for step, example in enumerate(block.examples):
        statuses = [
            int(path.read_text("latin-1").split()[1])
            for path in sorted(heads.glob(f"{step}.*"), key=lambda p: int(p.suffix[1:]))
        ]
        if not statuses or not all(
            s == example.status if example.status else s not in REFUSED and s < 500
            for s in statuses
        ):
            wrong.append(f"{example.where}: {example.command!r} answered {statuses}")
    return wrong
