"""Numbered schema migrations, tracked in PRAGMA user_version."""

from __future__ import annotations

import sqlite3

from aura.store.errors import LogUnreadable

__all__ = ["MIGRATIONS", "migrate"]

#: Migration N (1-based) brings a database from user_version N-1 to N. Never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    # 1: the log, refusing UPDATE and DELETE, and the job-list read model.
    """
    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY,
        job_id  TEXT    NOT NULL,
        version INTEGER NOT NULL,
        type    TEXT    NOT NULL,
        step    TEXT,
        attempt INTEGER NOT NULL,
        ts      TEXT    NOT NULL,
        data    TEXT    NOT NULL,
        UNIQUE (job_id, version)
    );
    CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE refused'); END;
    CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE refused'); END;

    CREATE TABLE jobs (
        job_id      TEXT PRIMARY KEY,
        preset      TEXT    NOT NULL,
        status      TEXT    NOT NULL,
        attempt     INTEGER NOT NULL,
        created_utc TEXT    NOT NULL,
        started_utc TEXT,
        ended_utc   TEXT,
        last_seq    INTEGER NOT NULL
    );
    CREATE INDEX jobs_by_status ON jobs (status, created_utc);
    CREATE INDEX jobs_by_created ON jobs (created_utc);
    CREATE TABLE projector_positions (
        name     TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    );
    """,
    # 2: job rows without last_seq, so events that change no row (progress, step transitions)
    # write nothing to `jobs`. A read model is a cache: drop it and let the projector rebuild it.
    """
    DROP TABLE jobs;
    CREATE TABLE jobs (
        job_id      TEXT PRIMARY KEY,
        preset      TEXT    NOT NULL,
        status      TEXT    NOT NULL,
        attempt     INTEGER NOT NULL,
        created_utc TEXT    NOT NULL,
        started_utc TEXT,
        ended_utc   TEXT
    );
    CREATE INDEX jobs_by_status ON jobs (status, created_utc);
    CREATE INDEX jobs_by_created ON jobs (created_utc);
    DELETE FROM projector_positions WHERE name = 'job_list';
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing migrations, each in its own transaction; returns the new version.

    The version is read again under each migration's write lock: two processes opening a new
    database at once (a server and `aura sample`) must not both apply migration 1.
    """
    while True:
        version = _schema_version(conn)
        if version == len(MIGRATIONS):
            return version
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _schema_version(conn)
            if version < len(MIGRATIONS):
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _schema_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise LogUnreadable(
            f"the database's schema version {version} is newer than this build's "
            f"({len(MIGRATIONS)}): use a newer Aura, or another data folder"
        )
    return version


def _statements(script: str) -> list[str]:
    # executescript() would commit on its own; split on complete statements instead.
    statements, current = [], ""
    for line in script.strip().splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
