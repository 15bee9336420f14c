"""AURA_DATABASE_URL: a malformed one is InvalidInput:AURA_DATABASE_URL without its value, and
its password is shown nowhere (the URL shown without it, the value redacted from errors), and
the commands that work on SQLite's file refuse it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aura.cli.main import main
from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import redact
from aura.engine.errors.taxonomy import AuraError

PASSWORD = "s3cret-pass/word"
URL = "postgresql://aura:s3cret-pass%2Fword@db.example:5432/aura?sslmode=require"


@pytest.mark.parametrize(
    "value",
    [
        "mysql://aura:s3cret-pass@db/aura",  # another database
        "postgresql://aura:s3cret-pass@db.example",  # no database named
        "postgresql:aura:s3cret-pass",  # no authority
        "postgresql://aura:s3cret-pass@[::1/aura",  # not a URL
    ],
)
def test_a_malformed_database_url_is_invalid_input_never_quoted(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AURA_DATABASE_URL", value)
    with pytest.raises(AuraError) as caught:
        Settings.from_env()
    assert caught.value.info.code == "InvalidInput:AURA_DATABASE_URL"
    assert "s3cret-pass" not in str(caught.value.info)


def test_the_database_password_is_shown_nowhere() -> None:
    settings = Settings.from_env(database_url=URL)
    assert settings.database_url == URL
    assert settings.database_url_shown == "postgresql://aura@db.example:5432/aura?sslmode=require"
    assert set(settings.database_secrets) == {PASSWORD, "s3cret-pass%2Fword"}
    message = f"connect to {URL} failed, password {PASSWORD}"
    assert "s3cret" not in redact(message, settings)
    in_query = Settings.from_env(database_url="postgresql://db/aura?password=qpass1234&x=1")
    assert in_query.database_url_shown == "postgresql://db/aura?x=1"
    assert in_query.database_secrets == ("qpass1234",)
    assert Settings().database_url_shown is None


@pytest.mark.parametrize("command", [["backup", "copy.db"], ["compact", "--older-than", "0s"]])
def test_sqlite_only_commands_refuse_a_database_url(
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AURA_DATABASE_URL", URL)
    assert main([*command, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "PostgreSQL" in err and "pg_dump" in err and PASSWORD not in err
