"""The system check's `log` finding with AURA_DATABASE_URL: about the database (it answers, its
schema is one this build reads, its role has the rights to run Aura), its URL shown without the
password; and a role with only the run-time rights (docs/operations.md) runs Aura."""

from __future__ import annotations

import contextlib
import re
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import msgspec

from aura.engine.config.settings import Settings
from aura.engine.tools.preflight import check_database
from aura.projections.events import JobCreated, JobStarted
from aura.store.pg.log import PgEventLog
from aura.store.pg.schema import RUN_TIME_RIGHTS
from aura.tests.job_logs import append_job, succeeded

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PASSWORD = "doctor-secret-42"  # the test server trusts local connections: never asked for


def with_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{PASSWORD}@{host}"


async def test_the_log_finding_checks_the_database(pg_url: str) -> None:
    settings = Settings(database_url=with_password(pg_url))
    fresh = await check_database(settings)
    assert fresh.status == "ok" and "no log yet" in fresh.message
    async with await PgEventLog.open(pg_url) as log:
        await append_job(log, succeeded())
        events = await log.max_seq()
    found = await check_database(settings)
    assert found.status == "ok" and f"({events} events)" in found.message
    for finding in (fresh, found):
        assert PASSWORD not in msgspec.json.encode(finding).decode()


async def test_a_database_that_does_not_answer_is_database_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(database_url=f"postgresql://aura:{PASSWORD}@127.0.0.1:{port}/aura")
    finding = await check_database(settings)
    assert finding.status == "error" and finding.code == "DatabaseUnavailable"
    assert finding.details["database"] == f"postgresql://aura@127.0.0.1:{port}/aura"
    assert PASSWORD not in msgspec.json.encode(finding).decode()


@contextlib.asynccontextmanager
async def a_role(pg_url: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A new login role with no rights (roles are the server's: dropped at the end), and the
    URL of the test's schema as that role; the connection: the owner's, to grant rights."""
    role = f"aura_role_{uuid.uuid4().hex[:12]}"
    owner = await asyncpg.connect(pg_url)
    await owner.execute(f"CREATE ROLE {role} LOGIN")
    try:
        parts = urlsplit(pg_url)
        yield urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}")), owner
    finally:
        await owner.execute(f"DROP OWNED BY {role}")  # its grants
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()


def schema_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["search_path"][0]


def role_of(url: str) -> str:
    return str(urlsplit(url).username)


async def grant_run_time_rights(owner: asyncpg.Connection, url: str, *, but: str = "") -> None:
    """The rights docs/operations.md lists for a role that does not own the tables, except
    `but` (e.g. "INSERT on events")."""
    schema, role = schema_of(url), role_of(url)
    await owner.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    for table, rights in RUN_TIME_RIGHTS.items():
        granted = [r for r in rights if f"{r} on {table}" != but]
        await owner.execute(f"GRANT {', '.join(granted)} ON {schema}.{table} TO {role}")
    await owner.execute(f"GRANT USAGE ON SEQUENCE {schema}.jobs_created_seq_seq TO {role}")


def documented_grants(schema: str, role: str) -> str:
    """operations.md's GRANT example, for role `aura_app` on schema `aura`, made this test's."""
    (block,) = re.findall(r"```sql\n(.*?)```", OPERATIONS.read_text(encoding="utf-8"), re.DOTALL)
    block = re.sub(r"\baura_app\b", role, block)
    return re.sub(r"\baura\.", f"{schema}.", block).replace("SCHEMA aura ", f"SCHEMA {schema} ")


async def test_a_role_with_the_documented_grants_runs_aura_on_a_log_it_does_not_own(
    pg_url: str,
) -> None:
    await (await PgEventLog.open(pg_url)).close()  # its owner creates it
    async with a_role(pg_url) as (url, owner):
        await owner.execute(documented_grants(schema_of(url), role_of(url)))
        finding = await check_database(Settings(database_url=url))
        assert finding.status == "ok", finding
        async with await PgEventLog.open(url) as log:
            created = JobCreated(preset="sample-hello-youtube", steps=("mux",), correlation_id="c")
            await log.append("j", [created], 0)
            (lease,) = await log.leases.claim("w", 30.0, 10)
            assert await log.leases.renew("w", "j", lease.token, 30.0)
            await log.append("j", [JobStarted()], 1, fence=lease)
            assert await log.leases.release("w", "j", lease.token)
            job_id = await append_job(log, succeeded())  # its last append gives no lease up
            assert [r.version for r in await log.read("j")] == [1, 2]
            row = await log.jobs_table.get(job_id)
            assert row is not None and row.status.value == "Succeeded"


async def test_a_role_missing_a_right_is_told_which(pg_url: str) -> None:
    await (await PgEventLog.open(pg_url)).close()
    async with a_role(pg_url) as (url, owner):
        await owner.execute(f"GRANT USAGE ON SCHEMA {schema_of(url)} TO {role_of(url)}")
        bare = await check_database(Settings(database_url=url))
        assert bare.status == "error" and bare.code == "DatabaseRightsMissing"
        expected = [f"{r} on {t}" for t, rights in RUN_TIME_RIGHTS.items() for r in rights]
        assert sorted(bare.details["missing"]) == sorted(
            [*expected, f"USAGE on sequence {schema_of(url)}.jobs_created_seq_seq"]
        )
        await grant_run_time_rights(owner, url, but="INSERT on events")
        one_short = await check_database(Settings(database_url=url))
        assert one_short.code == "DatabaseRightsMissing"
        assert one_short.details["missing"] == ["INSERT on events"]
        assert one_short.message == f"the role {role_of(url)} lacks INSERT on events"


async def test_a_role_that_cannot_create_the_log_is_told_so(pg_url: str) -> None:
    async with a_role(pg_url) as (url, owner):  # no log yet, and no CREATE on its schema
        await owner.execute(f"GRANT USAGE ON SCHEMA {schema_of(url)} TO {role_of(url)}")
        finding = await check_database(Settings(database_url=url))
        assert finding.code == "DatabaseRightsMissing"
        assert finding.details["missing"] == [
            f"CREATE on schema {schema_of(url)} (to create the log's tables)"
        ]
        await owner.execute(f"GRANT CREATE ON SCHEMA {schema_of(url)} TO {role_of(url)}")
        assert (await check_database(Settings(database_url=url))).status == "ok"
