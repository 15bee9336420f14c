"""The log's formats (aura.engine.config.logs): a JSON object or a readable line per record, the
job and correlation ids from the context, secrets redacted, and the log file kept in the data
folder."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aura.engine.config.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    bind_correlation,
    bind_job,
    log_file_in,
)
from aura.engine.config.settings import Settings
from aura.engine.errors.redaction import REDACTED
from aura.engine.errors.taxonomy import AuraError

SECRET = "s3cret-value-of-the-token"


def record(
    message: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    *,
    level: int = logging.WARNING,
    exc: bool = False,
    **extra: Any,
) -> logging.LogRecord:
    """A record as `logging.getLogger("aura.test").log(level, message, *args, extra=extra)`
    makes it, run through the ContextFilter as a handler would."""
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad {SECRET}")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.getLogger("aura.test").makeRecord(
        "aura.test", level, __file__, 1, message, args, exc_info, extra=extra
    )
    ContextFilter().filter(made)
    return made


def in_context(job: str | None, correlation: str | None, **kwargs: Any) -> logging.LogRecord:
    """`record(**kwargs)` made in a context bound to this job and correlation id (a copy, so
    no other test sees them)."""

    def make() -> logging.LogRecord:
        if job is not None:
            bind_job(job, correlation)
        elif correlation is not None:
            bind_correlation(correlation)
        return record(**kwargs)

    return contextvars.copy_context().run(make)


def as_json(made: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter(lambda: [SECRET]).format(made)
    assert "\n" not in line
    decoded: dict[str, Any] = json.loads(line)
    return decoded


def test_a_json_line_has_time_level_logger_message_and_the_bound_ids() -> None:
    made = in_context("job-1", "corr-1")
    fields = as_json(made)
    assert list(fields) == ["time", "level", "logger", "message", "job_id", "correlation_id"]
    assert fields["level"] == "WARNING" and fields["logger"] == "aura.test"
    assert fields["message"] == "hello world"
    assert (fields["job_id"], fields["correlation_id"]) == ("job-1", "corr-1")
    when = datetime.fromtimestamp(made.created, UTC)
    assert fields["time"] == when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_without_a_bound_job_or_correlation_id_the_fields_are_left_out() -> None:
    fields = as_json(in_context(None, None))
    assert "job_id" not in fields and "correlation_id" not in fields
    assert "correlation_id" in as_json(in_context(None, "corr-2"))


def test_a_records_own_fields_win_over_the_context_and_are_kept() -> None:
    made = in_context("job-1", "corr-1", correlation_id="mine", status=404, path="/x")
    fields = as_json(made)
    assert fields["correlation_id"] == "mine" and fields["job_id"] == "job-1"
    assert (fields["status"], fields["path"]) == (404, "/x")


def test_the_traceback_is_a_field_of_the_one_line() -> None:
    fields = as_json(record(exc=True))
    assert fields["exc"].startswith("Traceback (most recent call last):")
    assert fields["exc"].rstrip().endswith(f"ValueError: bad {REDACTED}")


def test_secrets_and_key_like_text_never_reach_a_line() -> None:
    made = in_context(
        SECRET,
        None,
        message="key %s, header %s, token %s",
        args=("sk-abcdefghijklmnop", "Bearer abcdefghijkl", SECRET),
        exc=True,
        path=f"/api/jobs/{SECRET}",
    )
    json_line = JsonFormatter(lambda: [SECRET]).format(made)
    text_line = TextFormatter(lambda: [SECRET]).format(made)
    for line in (json_line, text_line):
        assert SECRET not in line and "sk-abcdefghijklmnop" not in line
        assert "abcdefghijkl" not in line and REDACTED in line
    fields = json.loads(json_line)
    assert fields["path"] == f"/api/jobs/{REDACTED}" and fields["job_id"] == REDACTED


@pytest.mark.parametrize(
    "text",
    [
        "sk-0123456789abcdef",
        "BEARER abcdefghijkl",
        "api_key=abcd1234",
        "Api-Key: abcd1234",
        "APIKEY=abcd1234",
        "token='abcd1234'",
        "authorization: abcd1234",
    ],
)
def test_every_key_like_form_is_redacted_in_a_line(text: str) -> None:
    line = JsonFormatter(lambda: []).format(record("got %s", (f"x {text} y",)))
    assert REDACTED in json.loads(line)["message"] and text not in line


def test_the_secrets_are_asked_for_each_record() -> None:
    secrets: list[str] = []
    formatter = JsonFormatter(lambda: secrets)
    assert "later-secret" in formatter.format(record(args=("later-secret",)))
    secrets.append("later-secret")
    assert "later-secret" not in formatter.format(record(args=("later-secret",)))


def test_a_text_line_is_readable_and_names_each_id_once() -> None:
    line = TextFormatter(lambda: []).format(in_context("job-1", "corr-1"))
    time, rest = line.split(" ", 1)
    assert len(time) == len("2026-12-07T19:00:00.123Z") and time.endswith("Z")
    assert rest == "WARNING aura.test: hello world (job job-1, correlation id corr-1)"
    named = in_context("job-1", "corr-1", message="job %s failed", args=("job-1",))
    assert (
        TextFormatter(lambda: [])
        .format(named)
        .endswith("aura.test: job job-1 failed (correlation id corr-1)")
    )
    assert TextFormatter(lambda: []).format(in_context(None, None)).endswith(": hello world")


def test_a_text_line_is_followed_by_its_traceback() -> None:
    first, *rest = TextFormatter(lambda: []).format(record(exc=True)).splitlines()
    assert first.endswith("WARNING aura.test: hello world")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1].startswith("ValueError")


def test_the_log_file_must_be_a_file_of_its_own_inside_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    assert log_file_in(settings, "logs/aura.log") == data.resolve() / "logs" / "aura.log"
    assert log_file_in(settings, str(data / "server.log")) == data.resolve() / "server.log"
    assert log_file_in(settings, "logs/aura.db") == data.resolve() / "logs" / "aura.db"
    outside = ["../aura.log", str(tmp_path / "aura.log"), ".", "/etc/passwd"]
    own = ["aura.db", "aura.db-wal", "aura.lock", "settings.json", "jobs", "jobs/x/aura.log"]
    for name in outside + own:
        with pytest.raises(AuraError) as caught:
            log_file_in(settings, name)
        assert caught.value.code == "InvalidInput:AURA_LOG_FILE", name
