"""Numbered schema migrations of the PostgreSQL log, tracked in the `aura_schema` table.

The same story as store/schema.py: migration N brings the database from version N-1 to N, each
in its own transaction, applied at open; a database newer than this build is refused.
"""

from __future__ import annotations

import asyncpg

from aura.store.errors import LogUnreadable, StoreError
from aura.store.pg.batch import APPEND_LOCK, CHANNEL, LEASE_LOST
from aura.store.pg.leases import CLAIMABLE_STATUSES, FIRST_TOKEN

__all__ = [
    "MIGRATIONS",
    "RUN_TIME_RIGHTS",
    "SCHEMA_LOCK",
    "migrate",
    "missing_rights",
    "schema_version",
]

#: the advisory lock (session level) two processes opening a new database at once take, so
#: that only one applies each migration
SCHEMA_LOCK = 0x41555241_0001


#: Migration N (1-based) brings a database from version N-1 to N. Never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    # 1: the log (its seqs handed out under APPEND_LOCK, see store/pg/batch.py), refusing
    # UPDATE, DELETE and TRUNCATE; the job-list read model and the projections' positions.
    """
    CREATE TABLE events (
        seq     bigint      PRIMARY KEY,
        job_id  text        NOT NULL,
        version integer     NOT NULL,
        type    text        NOT NULL,
        step    text,
        attempt integer     NOT NULL,
        ts      timestamptz NOT NULL,
        data    jsonb       NOT NULL,
        UNIQUE (job_id, version)
    );
    CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'events is append-only: % refused', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END $$;
    CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
    CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
    CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

    CREATE TABLE jobs (
        job_id      text PRIMARY KEY,
        preset      text        NOT NULL,
        status      text        NOT NULL,
        attempt     integer     NOT NULL,
        created_utc text        NOT NULL,
        started_utc text,
        ended_utc   text,
        created_seq bigserial   NOT NULL
    );
    CREATE INDEX jobs_by_status ON jobs (status, created_utc, created_seq);
    CREATE INDEX jobs_by_created ON jobs (created_utc, created_seq);
    CREATE TABLE projector_positions (
        name     text PRIMARY KEY,
        last_seq bigint NOT NULL
    );

    -- The first step of every append transaction, in one round trip: take the append lock,
    -- then (VOLATILE: each query sees what committed before the lock was granted) read the last
    -- seq, the versions of the batch's jobs, and the job-list rows the batch's events change.
    CREATE FUNCTION aura_begin_append(
        batch_jobs text[], row_jobs text[],
        OUT last_seq bigint, OUT job_ids text[], OUT versions integer[], OUT job_rows jobs[]
    ) LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(APPEND_LOCK);
        SELECT coalesce(max(seq), 0) INTO last_seq FROM events;
        SELECT array_agg(v.job_id), array_agg(v.version) INTO job_ids, versions FROM (
            SELECT job_id, max(version) AS version FROM events
            WHERE job_id = any(batch_jobs) GROUP BY job_id
        ) AS v;
        SELECT array_agg(j) INTO job_rows FROM jobs AS j WHERE j.job_id = any(row_jobs);
    END $$;

    -- A batch's writes, in one round trip: under the append lock, and only if the log's last
    -- seq is still `p_last_seq` (else false, nothing written), the events, the job-list rows
    -- they change and its position, and the notification.
    CREATE FUNCTION aura_append(
        p_last_seq bigint, p_seqs bigint[], p_jobs text[], p_versions integer[],
        p_types text[], p_steps text[], p_attempts integer[], p_ts timestamptz, p_data text[],
        r_jobs text[], r_presets text[], r_statuses text[], r_attempts integer[],
        r_created text[], r_started text[], r_ended text[],
        p_projection text, p_payload text
    ) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(APPEND_LOCK);
        IF (SELECT coalesce(max(seq), 0) FROM events) <> p_last_seq THEN
            RETURN false;
        END IF;
        INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data)
            SELECT r.s, r.j, r.v, r.t, r.st, r.a, p_ts, r.d::jsonb
            FROM unnest(p_seqs, p_jobs, p_versions, p_types, p_steps, p_attempts, p_data)
                AS r(s, j, v, t, st, a, d);
        INSERT INTO jobs (job_id, preset, status, attempt, created_utc, started_utc, ended_utc)
            SELECT * FROM unnest(r_jobs, r_presets, r_statuses, r_attempts, r_created,
                                 r_started, r_ended)
            ON CONFLICT (job_id) DO UPDATE SET status = excluded.status,
                attempt = excluded.attempt, started_utc = excluded.started_utc,
                ended_utc = excluded.ended_utc;
        INSERT INTO projector_positions (name, last_seq)
            VALUES (p_projection, p_seqs[array_upper(p_seqs, 1)])
            ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq;
        PERFORM pg_notify('CHANNEL', p_payload);
        RETURN true;
    END $$;
    """.replace("APPEND_LOCK", str(APPEND_LOCK)).replace("CHANNEL", CHANNEL),
    # 2: job leases (store/pg/leases.py): the worker holding each job, until when (the
    # database's clock), and the fencing token, which only grows: a row is released (worker_id
    # NULL), never deleted. The append that checks a fence, after writing the batch.
    """
    CREATE TABLE job_leases (
        job_id     text        PRIMARY KEY,
        worker_id  text,
        token      bigint      NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE FUNCTION job_leases_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'job_leases rows are released, never deleted: % refused', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END $$;
    CREATE TRIGGER job_leases_refuse_delete BEFORE DELETE ON job_leases
        FOR EACH STATEMENT EXECUTE FUNCTION job_leases_refuse_delete();
    CREATE TRIGGER job_leases_refuse_truncate BEFORE TRUNCATE ON job_leases
        FOR EACH STATEMENT EXECUTE FUNCTION job_leases_refuse_delete();

    -- aura_append, then, in the same transaction, each fence (job, token) checked against its
    -- lease row read FOR SHARE in job_id order: after the job-list rows, the order a claim locks
    -- them in, so that a claim commits either before this check or after this commit. A stale
    -- token raises LEASE_LOST (its job in DETAIL), which rolls the whole batch back.
    CREATE FUNCTION aura_append_fenced(
        f_jobs text[], f_tokens bigint[],
        p_last_seq bigint, p_seqs bigint[], p_jobs text[], p_versions integer[],
        p_types text[], p_steps text[], p_attempts integer[], p_ts timestamptz, p_data text[],
        r_jobs text[], r_presets text[], r_statuses text[], r_attempts integer[],
        r_created text[], r_started text[], r_ended text[],
        p_projection text, p_payload text
    ) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        stale text;
    BEGIN
        IF NOT aura_append(p_last_seq, p_seqs, p_jobs, p_versions, p_types, p_steps,
                           p_attempts, p_ts, p_data, r_jobs, r_presets, r_statuses,
                           r_attempts, r_created, r_started, r_ended, p_projection,
                           p_payload) THEN
            RETURN false;
        END IF;
        SELECT f.job_id INTO stale
            FROM unnest(f_jobs, f_tokens) AS f(job_id, token)
            LEFT JOIN (
                SELECT l.job_id, l.token FROM job_leases AS l
                WHERE l.job_id = any(f_jobs) AND l.worker_id IS NOT NULL
                ORDER BY l.job_id FOR SHARE
            ) AS held ON held.job_id = f.job_id AND held.token = f.token
            WHERE held.job_id IS NULL
            LIMIT 1;
        IF stale IS NOT NULL THEN
            RAISE EXCEPTION 'job %: its lease was lost to another worker', stale
                USING ERRCODE = 'LEASE_LOST', DETAIL = stale;
        END IF;
        RETURN true;
    END $$;
    """.replace("LEASE_LOST", LEASE_LOST),
    # 3: aura_append_leased replaces aura_append_fenced: aura_append, then, in the same
    # transaction, the first lease (token 1) of each new job its creating worker takes (`t_*`:
    # no claim of its own to commit), each fence checked as before, and each fenced job whose
    # status the batch ended (no longer Queued or Running) gives its lease up: its worker need
    # not release it in a commit of its own, and a retry is claimable at once. The lease rows
    # are locked FOR NO KEY UPDATE, not FOR SHARE, so that the release upgrades no lock
    # (appends are serialised by APPEND_LOCK: the stronger lock costs them nothing).
    """
    DROP FUNCTION aura_append_fenced;
    CREATE FUNCTION aura_append_leased(
        f_jobs text[], f_tokens bigint[],
        t_jobs text[], t_workers text[], t_seconds double precision[],
        p_last_seq bigint, p_seqs bigint[], p_jobs text[], p_versions integer[],
        p_types text[], p_steps text[], p_attempts integer[], p_ts timestamptz, p_data text[],
        r_jobs text[], r_presets text[], r_statuses text[], r_attempts integer[],
        r_created text[], r_started text[], r_ended text[],
        p_projection text, p_payload text
    ) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        stale text;
    BEGIN
        IF NOT aura_append(p_last_seq, p_seqs, p_jobs, p_versions, p_types, p_steps,
                           p_attempts, p_ts, p_data, r_jobs, r_presets, r_statuses,
                           r_attempts, r_created, r_started, r_ended, p_projection,
                           p_payload) THEN
            RETURN false;
        END IF;
        INSERT INTO job_leases (job_id, worker_id, token, expires_at)
            SELECT t.job_id, t.worker_id, FIRST_TOKEN, now() + make_interval(secs => t.seconds)
            FROM unnest(t_jobs, t_workers, t_seconds) AS t(job_id, worker_id, seconds)
            ORDER BY t.job_id;
        SELECT f.job_id INTO stale
            FROM unnest(f_jobs, f_tokens) AS f(job_id, token)
            LEFT JOIN (
                SELECT l.job_id, l.token FROM job_leases AS l
                WHERE l.job_id = any(f_jobs) AND l.worker_id IS NOT NULL
                ORDER BY l.job_id FOR NO KEY UPDATE
            ) AS held ON held.job_id = f.job_id AND held.token = f.token
            WHERE held.job_id IS NULL
            LIMIT 1;
        IF stale IS NOT NULL THEN
            RAISE EXCEPTION 'job %: its lease was lost to another worker', stale
                USING ERRCODE = 'LEASE_LOST', DETAIL = stale;
        END IF;
        UPDATE job_leases AS l SET worker_id = NULL, expires_at = now()
            FROM jobs AS j
            WHERE l.job_id = any(f_jobs) AND j.job_id = l.job_id
                AND NOT j.status = any('{CLAIMABLE}'::text[]);
        RETURN true;
    END $$;
    """.replace("LEASE_LOST", LEASE_LOST)
    .replace("FIRST_TOKEN", str(FIRST_TOKEN))
    .replace("CLAIMABLE", ",".join(CLAIMABLE_STATUSES)),
)


async def schema_version(conn: asyncpg.Connection) -> int:
    """The database's schema version (0: a new database); LogUnreadable if newer than ours."""
    exists = await conn.fetchval("SELECT to_regclass('aura_schema') IS NOT NULL")
    version = int(await conn.fetchval("SELECT version FROM aura_schema")) if exists else 0
    if version > len(MIGRATIONS):
        raise LogUnreadable(
            f"the database's schema version {version} is newer than this build's "
            f"({len(MIGRATIONS)}): use a newer Aura, or another database"
        )
    return version


#: the rights on each table that a role running Aura needs, besides USAGE on the schema and
#: on the sequence of `jobs.created_seq`, and EXECUTE on the `aura_*` functions (PUBLIC's by
#: default); creating and migrating the schema takes its owner (docs/operations.md)
RUN_TIME_RIGHTS: dict[str, tuple[str, ...]] = {
    "aura_schema": ("SELECT",),
    "events": ("SELECT", "INSERT"),
    "jobs": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "projector_positions": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "job_leases": ("SELECT", "INSERT", "UPDATE"),
}

_MISSING_RIGHTS = r"""
    SELECT t.privilege || ' on ' || t.name
    FROM unnest($1::text[], $2::text[]) AS t(name, privilege)
    WHERE to_regclass(t.name) IS NOT NULL AND NOT has_table_privilege(t.name, t.privilege)
    UNION ALL
    SELECT 'USAGE on sequence ' || s.name
    FROM pg_get_serial_sequence('jobs', 'created_seq') AS s(name)
    WHERE s.name IS NOT NULL AND NOT has_sequence_privilege(s.name, 'USAGE')
    UNION ALL
    SELECT 'EXECUTE on ' || p.oid::regprocedure::text FROM pg_proc AS p
    WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'aura\_%'
        AND NOT has_function_privilege(p.oid, 'EXECUTE')
"""
_CAN_CREATE = (
    "SELECT to_regclass('aura_schema') IS NOT NULL, current_schema(), "
    "has_schema_privilege(current_schema(), 'CREATE')"
)


async def missing_rights(conn: asyncpg.Connection) -> list[str]:
    """The rights the connected role lacks to run Aura on the log, e.g. "INSERT on events", or
    to create it when there is none yet; empty when it has them all. Migrating an older schema
    takes its owner, which this does not tell."""
    exists, schema, can_create = await conn.fetchrow(_CAN_CREATE)
    if not exists:
        if schema is None:
            return ["USAGE and CREATE on a schema of the search path"]
        return [] if can_create else [f"CREATE on schema {schema} (to create the log's tables)"]
    names = [(name, right) for name, rights in RUN_TIME_RIGHTS.items() for right in rights]
    rows = await conn.fetch(_MISSING_RIGHTS, [n for n, _ in names], [r for _, r in names])
    return [row[0] for row in rows]


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply the missing migrations, each in its own transaction; returns the new version. A
    log at this build's version is left as it is (no DDL): a role with only the run-time
    rights opens it."""
    await conn.execute("SELECT pg_advisory_lock($1)", SCHEMA_LOCK)
    try:
        if await schema_version(conn) == len(MIGRATIONS):
            return len(MIGRATIONS)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS aura_schema (version integer NOT NULL);"
            "INSERT INTO aura_schema SELECT 0 WHERE NOT EXISTS (SELECT FROM aura_schema)"
        )
        version = await schema_version(conn)
        while version < len(MIGRATIONS):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[version])
                await conn.execute("UPDATE aura_schema SET version = $1", version + 1)
            version += 1
        return version
    except asyncpg.PostgresError as e:
        raise StoreError(f"cannot migrate the log: {e}") from e
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", SCHEMA_LOCK)
