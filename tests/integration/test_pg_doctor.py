"""The system check's `log` finding with AURA_DATABASE_URL: about the database (it answers, its
schema is one this build reads), its URL shown without the password."""

from __future__ import annotations

import socket

import msgspec

from aura.engine.config.settings import Settings
from aura.engine.tools.preflight import check_database
from aura.store.pg.log import PgEventLog
from aura.tests.job_logs import append_job, succeeded

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


async def test_a_database_that_does_not_answer_is_log_unreadable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(database_url=f"postgresql://aura:{PASSWORD}@127.0.0.1:{port}/aura")
    finding = await check_database(settings)
    assert finding.status == "error" and finding.code == "LogUnreadable"
    assert finding.details["database"] == f"postgresql://aura@127.0.0.1:{port}/aura"
    assert PASSWORD not in msgspec.json.encode(finding).decode()
