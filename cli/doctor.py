"""`aura doctor`: check this machine (ffmpeg, espeak-ng, disk, output folder, log, GPU, keys).

Prints one line per finding, with its code and remediation when it is not ok. Exits 1 if any
check fails (a render would fail), 0 otherwise; warnings (no GPU for `auto`, no OpenAI key)
do not fail it. `--json` prints the findings as GET /api/system-check returns them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

import msgspec

from aura.cli.main import add_data_dir, add_database_url
from aura.engine.config.saved_settings import read_saved, with_saved
from aura.engine.config.settings import Settings
from aura.engine.errors.taxonomy import AuraError
from aura.engine.tools.preflight import Finding, system_check

__all__ = ["add_arguments", "print_findings", "run"]

_MARK = {"ok": "ok  ", "warning": "warn", "error": "FAIL"}


def add_arguments(parser: argparse.ArgumentParser, command_name: str) -> None:
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    add_data_dir(parser)
    add_database_url(parser)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
        # as the server uses them: the provider settings saved from the page win
        settings = with_saved(settings, read_saved(settings.data_dir))
    except AuraError as e:  # a malformed AURA_* variable, an unreadable settings.json
        print(f"aura doctor: {e} ({e.info.remediation})", file=sys.stderr)
        return 2
    findings = asyncio.run(system_check(settings))
    if args.json:
        print(msgspec.json.encode(findings).decode())
    else:
        print_findings(findings, sys.stdout)
    return 1 if any(f.failed for f in findings) else 0


def print_findings(findings: list[Finding], out: TextIO) -> None:
    """`[ok  ] ffmpeg: ffmpeg version 5.1...`, and for the others the code and the fix."""
    for finding in findings:
        print(f"[{_MARK[finding.status]}] {finding.check}: {finding.message}", file=out)
        if finding.status != "ok":
            print(f"       code: {finding.code}", file=out)
            print(f"       fix:  {finding.remediation}", file=out)
    failed = sum(f.failed for f in findings)
    warned = sum(f.status == "warning" for f in findings)
    verdict = "not ready: fix the failed checks" if failed else "ready to render"
    print(f"{verdict} ({failed} failed, {warned} warnings)", file=out)
