"""A consistent copy of the log, taken while a server may be appending to it.

SQLite's online backup API copies the database as of one read transaction. The log is in WAL
mode, where a reader never blocks the writer, so the copy is made in one step: copied in steps
of a few pages, a backup starts over whenever another process commits between two steps, and
under a busy server it might never end. The copy is written under a temp name beside DEST,
switched to a rollback journal (one self-contained file), checked with `PRAGMA integrity_check`,
fsynced and renamed to DEST.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import NamedTuple

from aura.store.copies import check_copy, remove_copy
from aura.store.errors import DatabaseMissing, StoreError
from aura.store.fsync import fsync_file, fsync_folder

__all__ = ["BACKUP_SUFFIX", "Backup", "backup"]

#: the copy's name while it is written: `.DEST.backup-tmp`, beside DEST
BACKUP_SUFFIX = ".backup-tmp"


class Backup(NamedTuple):
    """What a backup copied."""

    events: int
    #: the seq of the newest event in the copy
    last_seq: int
    size_bytes: int


def backup(db_path: Path, dest: Path, *, force: bool = False) -> Backup:
    """Copy the log at `db_path` to `dest`; refuses an existing `dest` unless `force`.

    Raises DatabaseMissing when there is no log, FileExistsError for an existing `dest`,
    StoreError when the copy cannot be made or fails its check.
    """
    if not db_path.is_file():
        raise DatabaseMissing(f"no log at {db_path}")
    if dest.is_dir():
        raise StoreError(f"{dest} is a folder: name the backup's file, e.g. {dest}/aura-backup.db")
    live = db_path.resolve()
    if dest.resolve().parent == live.parent and dest.resolve().name.startswith(live.name):
        # replacing the live log (or its WAL) would lose the appends after the snapshot
        raise StoreError(f"{dest} is the log itself or one of its files: name a file elsewhere")
    if dest.exists() and not force:
        raise FileExistsError(f"{dest} exists: choose another name, or pass --force to replace it")
    temp = dest.with_name(f".{dest.name}{BACKUP_SUFFIX}")
    remove_copy(temp)
    try:
        _copy(db_path, temp)
        found = check_copy(temp, "the backup")
        fsync_file(temp)
        os.replace(temp, dest)
        fsync_folder(dest.parent)
    except sqlite3.Error as e:
        raise StoreError(f"cannot back up {db_path} to {dest}: {e}") from e
    except OSError as e:
        raise StoreError(f"cannot write the backup {dest}: {e}") from e
    finally:
        remove_copy(temp)
    return Backup(found[0], found[1], dest.stat().st_size)


def _copy(db_path: Path, temp: Path) -> None:
    # read-only: a backup never creates, migrates or checkpoints the log
    src = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        dst = sqlite3.connect(temp, isolation_level=None)
        try:
            src.backup(dst)  # one step, one snapshot (see the module's docstring)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
