"""map_exception: each kind of exception gets its taxonomy code; secrets never come through."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from aura.engine.config.settings import Settings
from aura.engine.errors.mapping import map_exception, redact
from aura.engine.errors.redaction import REDACTED
from aura.engine.errors.taxonomy import TAXONOMY, AuraError, base_code
from aura.engine.files.atomic import EmptyOutput
from aura.engine.tools.process import ProcessFailed, ProgramNotFound
from aura.store.errors import StoreUnavailable

SECRET = "sk-live-abcdefghijklmnop1234"


def code_of(exc: BaseException, step: str = "mux") -> str:
    info = map_exception(exc, step=step, correlation_id="corr")
    assert info.step == step and info.correlation_id == "corr"
    assert info.remediation == TAXONOMY[base_code(info.code)].remediation
    return info.code


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (errno.ENOSPC, "OutOfDiskSpace"),
        (errno.EDQUOT, "OutOfDiskSpace"),
        (errno.EACCES, "OutputDirectoryNotWritable"),
        (errno.EPERM, "OutputDirectoryNotWritable"),
        (errno.EROFS, "OutputDirectoryNotWritable"),
        (errno.ENOTDIR, "OutputDirectoryNotWritable"),
        (errno.EEXIST, "OutputDirectoryNotWritable"),  # a file where a folder should be
        (errno.ECONNREFUSED, "TransientNetworkFailure"),
        (errno.EIO, "Internal"),
    ],
)
def test_os_errors_map_by_errno(number: int, code: str) -> None:
    assert code_of(OSError(number, "boom", "/data/jobs/x/video.mp4")) == code


def test_connection_errors_are_transient() -> None:
    assert code_of(ConnectionRefusedError()) == "TransientNetworkFailure"
    assert code_of(ConnectionResetError()) == "TransientNetworkFailure"


def test_a_log_whose_database_does_not_answer_is_database_unavailable() -> None:
    # its cause may be a timeout or a refused connection: not a step's, nor the network's
    unavailable = StoreUnavailable("read failed: TimeoutError")
    unavailable.__cause__ = TimeoutError()
    assert code_of(unavailable) == "DatabaseUnavailable"
    assert TAXONOMY["DatabaseUnavailable"].http_status == 503


def test_a_timeout_names_the_step() -> None:
    assert code_of(TimeoutError(), step="broll") == "StepTimeout:broll"


def test_missing_programs() -> None:
    assert code_of(ProgramNotFound("ffmpeg")) == "FFmpegNotFound"
    assert code_of(ProgramNotFound("/opt/bin/ffprobe")) == "FFmpegNotFound"
    assert code_of(ProgramNotFound("espeak-ng")) == "ToolNotFound:espeak-ng"
    custom = Settings(ffmpeg_path="/opt/custom/encoder")
    info = map_exception(ProgramNotFound("/opt/custom/encoder"), step="mux", settings=custom)
    assert info.code == "FFmpegNotFound"


def test_a_non_zero_ffmpeg_exit_carries_the_code_and_the_stderr_tail() -> None:
    exc = ProcessFailed(["ffmpeg", "-i", "x"], 234, "line one\nNo such filter: 'nope'")
    info = map_exception(exc, step="broll", correlation_id="c")
    assert info.code == "FFmpegFailedExitCode:234"
    assert info.details["stderrTail"].endswith("No such filter: 'nope'")
    assert "No such filter" in info.message
    other = ProcessFailed(["espeak-ng", "x"], 1, "bad")
    assert code_of(other) == "Internal"
    crashed = map_exception(ProcessFailed(["espeak-ng", "x"], -11, ""), step="narration")
    assert crashed.code == "ToolCrashed:espeak-ng"
    assert crashed.details["signal"] == "SIGSEGV" and "killed by SIGSEGV" in crashed.message
    assert code_of(ProcessFailed(["ffmpeg", "-i", "x"], -9, "")) == "ToolCrashed:ffmpeg"
    # a program configured as ffprobe under another name is ffprobe all the same
    custom = Settings(ffprobe_path="/opt/tools/probe-wrap")
    wrapped = ProcessFailed(["/opt/tools/probe-wrap", "x.mp4"], 1, "bad")
    assert map_exception(wrapped, step=None, settings=custom).code == "FFmpegFailedExitCode:1"


def test_aura_errors_keep_their_code_and_gain_step_and_correlation() -> None:
    exc = AuraError.of("MissingApiKey:OPENAI_API_KEY", "no key")
    assert code_of(exc, step="preflight") == "MissingApiKey:OPENAI_API_KEY"


def test_anything_else_is_internal() -> None:
    assert code_of(ValueError("odd")) == "Internal"
    assert code_of(EmptyOutput(Path("/x/video.mp4"))) == "Internal"


def test_secrets_are_redacted_from_message_and_details() -> None:
    settings = Settings(openai_api_key="plainsecretvalue")
    exc = ProcessFailed(
        ["ffmpeg"],
        1,
        f"Authorization: Bearer {SECRET}\nkey plainsecretvalue\napi_key=hunter2hunter2",
    )
    info = map_exception(exc, step="mux", settings=settings)
    text = str(info)
    assert SECRET not in text and "plainsecretvalue" not in text and "hunter2" not in text
    assert REDACTED in info.details["stderrTail"]
    leaky = ValueError(f"failed with {SECRET}")
    assert SECRET not in str(map_exception(leaky, step="mux"))


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "ffmpeg exited with status 1: Invalid data found when processing input"
    assert redact(text) == text
    assert redact(f"token={SECRET}") == f"token={REDACTED}"
