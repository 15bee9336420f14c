"""A job's files as the runner sees them: verifying recorded artifacts, the output, temp files.

Artifact paths are stored as the step gave them; a relative one is relative to the job's work
folder. An absolute one inside a `jobs/<job id>/` folder is read from the job's work folder of
today's data folder: a data folder moved or restored from a backup keeps its artifacts (and
never reads the old folder's files, should it still exist).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from aura.engine.files.atomic import TEMP_MARKER
from aura.projections.events import Artifact, Output

__all__ = [
    "TEMP_NAME",
    "artifact_path",
    "file_sha256",
    "located",
    "output_of",
    "rebased",
    "remove_temp_files",
    "verify_artifact",
    "verify_artifacts",
]

logger = logging.getLogger(__name__)

#: names of files that are never results: aura.engine.files.atomic's temp files (TEMP_MARKER), and
#: `*.tmp` / `*.part` partial files
TEMP_NAME = re.compile(f"({re.escape(TEMP_MARKER)}|\\.tmp$|\\.part$)")
_CHUNK = 1 << 20


def artifact_path(artifact: Artifact, work_dir: Path | str) -> Path:
    return located(artifact.path, work_dir)


def located(recorded: str, work_dir: Path | str) -> Path:
    """Where a path recorded for a job's file is now: relative paths are relative to the job's
    work folder; an absolute one under a folder named like the work folder, inside `jobs/`
    (the layout of Settings.job_dir), is taken relative to it and put in today's work folder."""
    work = Path(work_dir)
    path = Path(recorded)
    if not path.is_absolute():
        return work / path
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):  # the innermost match
        if parts[i] == work.name and parts[i - 1] == "jobs":
            return work.joinpath(*parts[i + 1 :])
    return path


def rebased(artifact: Artifact, work_dir: Path | str) -> Artifact:
    """The artifact with its path where its file is now (see `located`)."""
    path = str(located(artifact.path, work_dir))
    return artifact if path == artifact.path else msgspec.structs.replace(artifact, path=path)


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
