"""A job's files as the runner sees them: verifying recorded artifacts, the output, temp files.

Artifact paths are stored as the step gave them; a relative one is relative to the job's work
folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from aura.engine.atomic import TEMP_MARKER
from aura.projections.events import Artifact, Output

__all__ = [
    "TEMP_NAME",
    "artifact_path",
    "file_sha256",
    "output_of",
    "remove_temp_files",
    "verify_artifact",
    "verify_artifacts",
]

logger = logging.getLogger(__name__)

#: names of files that are never results: aura.engine.atomic's temp files (TEMP_MARKER), and
#: `*.tmp` / `*.part` partial files
TEMP_NAME = re.compile(f"({re.escape(TEMP_MARKER)}|\\.tmp$|\\.part$)")
_CHUNK = 1 << 20


def artifact_path(artifact: Artifact, work_dir: Path | str) -> Path:
    path = Path(artifact.path)
    return path if path.is_absolute() else Path(work_dir) / path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_artifact(artifact: Artifact, work_dir: Path | str) -> bool:
    """True when the file exists with the recorded size and sha256 (blocking)."""
    path = artifact_path(artifact, work_dir)
    try:
        if path.stat().st_size != artifact.size_bytes:
            return False
        return file_sha256(path) == artifact.sha256
    except OSError:
        return False


async def verify_artifacts(artifacts: Iterable[Artifact], work_dir: Path | str) -> bool:
    """True when every artifact is intact; the hashing runs on a thread."""
    items = tuple(artifacts)
    if not items:
        return False
    return await asyncio.to_thread(lambda: all(verify_artifact(a, work_dir) for a in items))


async def output_of(artifacts: Mapping[str, Artifact]) -> Output:
    """The job's Output from its artifacts: the one named `video`, else the last one recorded.

    Pipelines whose steps produce a real video pass a probe that reads its duration (ffprobe);
    this default knows only the recorded size and checksum.
    """
    chosen = artifacts.get("video")
    if chosen is None and artifacts:
        chosen = list(artifacts.values())[-1]
    if chosen is None:
        return Output(video_path="", size_bytes=0, duration_seconds=0.0, sha256="")
    return Output(
        video_path=chosen.path,
        size_bytes=chosen.size_bytes,
        duration_seconds=0.0,
        sha256=chosen.sha256,
    )


def remove_temp_files(job_dir: Path) -> list[Path]:
    """Delete temp files left in a job's folder (by a killed writer); returns what went."""
    removed: list[Path] = []
    if not job_dir.is_dir():
        return removed
    for root, _dirs, files in os.walk(job_dir):
        for name in files:
            if TEMP_NAME.search(name):
                path = Path(root) / name
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as e:
                    logger.warning("cannot remove temp file %s: %s", path, e)
                    continue
                removed.append(path)
    return removed
