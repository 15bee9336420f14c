"""The runner on a real log (SQLite in tmp_path) with small real steps."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest
from runner_support import (
    TIMEOUT,
    assert_consistent,
    child_pids,
    failing_step,
    gate_step,
    is_type,
    pipeline,
    settings_for,
    sleep_step,
    temp_files,
    types_of,
    until,
    wait_for,
    wait_gone,
)

from aura.engine.config.inputs import STEP_NAMES, JobRequest, Options
from aura.engine.engine import Engine
from aura.engine.errors.taxonomy import AuraError, Conflict, JobNotFound
from aura.engine.run.context import StepContext
from aura.projections.events import (
    Artifact,
    JobCreated,
    JobFailed,
    JobSucceeded,
    JobWarning,
    Output,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
)
from aura.projections.job import JobStatus, StepStatus
from aura.store.errors import ConcurrencyError
from aura.store.log import EventLog

DRAFT = JobRequest(options=Options(quality="draft"))


async def test_a_job_runs_every_step_in_order_and_succeeds(tmp_path: Path) -> None:
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        submitted = await engine.submit(DRAFT)
        assert not submitted.duplicate
        assert submitted.job.status is JobStatus.QUEUED
        await engine.run_until_idle()
        job_id = submitted.job.job_id
        records = await engine.log.read(job_id)
        steps = [f"{t}:{s}" for s in STEP_NAMES for t in ("StepStarted", "StepSucceeded")]
        assert types_of(records) == ["JobCreated", "JobStarted", *steps, "JobSucceeded"]
        state = await assert_consistent(engine, job_id)
        assert state.status is JobStatus.SUCCEEDED
        assert all(s.status is StepStatus.SUCCEEDED and s.progress_pct == 100 for s in state.steps)
        mux = engine.settings.job_dir(job_id) / "mux.out"
        assert state.output is not None and state.output.video_path == str(mux)
        assert mux.read_bytes() == b"output of mux\n"
        assert isinstance(records[0].event, JobCreated)
        assert records[0].event.steps == STEP_NAMES


async def test_progress_is_throttled_rising_and_ends_at_100(tmp_path: Path) -> None:
    async def ticking(ctx: StepContext) -> list[Artifact]:
        for i in range(120):  # a tick every 10 ms for 1.2 s
            await ctx.progress(i * 100 / 120, "working", 1.2 - i / 100)
            await asyncio.sleep(0.01)
        return []

    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=ticking)
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        records = await engine.log.read(job_id)
        ticks = [r for r in records if isinstance(r.event, StepProgressed)]
        [started, succeeded] = [
            r.ts
            for r in records
            if isinstance(r.event, StepStarted | StepSucceeded) and r.event.step == "broll"
        ]
        ran = (succeeded - started).total_seconds()  # 1.2 s, or more on a busy machine
        assert 2 <= len(ticks) <= ran / 0.25 + 1, (len(ticks), ran)  # one per 250 ms, not 120
        pcts = [t.event.pct for t in ticks if isinstance(t.event, StepProgressed)]
        assert pcts == sorted(pcts) and pcts[-1] < 100
        gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(ticks)]
        assert all(gap >= 0.2 for gap in gaps)
        assert all(t.event.eta_seconds is not None for t in ticks)  # type: ignore[union-attr]
        state = await assert_consistent(engine, job_id)
        assert state.step("broll").progress_pct == 100


async def test_jobs_beyond_the_limit_wait_queued_and_start_in_submission_order(
    tmp_path: Path,
) -> None:
    gates: dict[str, asyncio.Event] = {}
    settings = settings_for(tmp_path, max_concurrent_jobs=2)
    async with await Engine.open(settings, pipeline=pipeline(narration=gate_step(gates))) as engine:
        ids = [(await engine.submit(DRAFT)).job.job_id for _ in range(4)]
        for job_id in ids[:2]:
            await wait_for(engine.log, job_id, is_type("StepStarted", "narration"))
        assert [(await engine.get(j)).status for j in ids] == [
            JobStatus.RUNNING,
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.QUEUED,
        ]
        assert engine.runner.queued_job_ids == ids[2:]
        gates.setdefault(ids[1], asyncio.Event()).set()
        await wait_for(engine.log, ids[2], is_type("StepStarted", "narration"))
        assert (await engine.get(ids[3])).status is JobStatus.QUEUED
        for job_id in ids:
            gates.setdefault(job_id, asyncio.Event()).set()
        await engine.run_until_idle()
        started = []
        for job_id in ids:
            records = await engine.log.read(job_id)
            started += [(r.seq, job_id) for r in records if r.type == "JobStarted"]
        started.sort()
        assert [job_id for _seq, job_id in started] == [ids[0], ids[1], ids[2], ids[3]]
        for job_id in ids:
            assert (await assert_consistent(engine, job_id)).status is JobStatus.SUCCEEDED


async def test_a_failing_step_fails_the_job_with_its_code_step_and_correlation_id(
    tmp_path: Path,
) -> None:
    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=failing_step())
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        records = await engine.log.read(job_id)
        assert types_of(records)[-2:] == ["StepFailed:broll", "JobFailed"]
        state = await assert_consistent(engine, job_id)
        failed = records[-2].event
        assert isinstance(failed, StepFailed) and isinstance(records[-1].event, JobFailed)
        error = failed.error
        assert error.code == "FFmpegFailedExitCode:1"
        assert (error.step, error.correlation_id) == ("broll", state.correlation_id)
        assert error.remediation
        assert records[-1].event.error == error
        assert state.status is JobStatus.FAILED
        assert [state.step(s).status for s in ("subtitles", "mux")] == [StepStatus.PENDING] * 2


async def test_an_unexpected_exception_becomes_internal_without_a_traceback(
    tmp_path: Path,
) -> None:
    async def broken(ctx: StepContext) -> list[Artifact]:
        raise ZeroDivisionError("secret detail")

    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(subtitles=broken)
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
        assert state.status is JobStatus.FAILED
        assert state.errors[-1].code == "Internal"
        assert state.errors[-1].step == "subtitles"
        assert "Traceback" not in state.errors[-1].message


async def test_a_step_past_its_timeout_is_stopped_and_fails_with_step_timeout(
    tmp_path: Path,
) -> None:
    request = JobRequest(options=Options(quality="draft", timeouts={"broll": 1.0}))
    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=sleep_step(60))
    ) as engine:
        job_id = (await engine.submit(request)).job.job_id
        await wait_for(engine.log, job_id, is_type("StepStarted", "broll"))
        pids: list[int] = []
        async with asyncio.timeout(TIMEOUT):
            while not pids:
                pids = child_pids("sleep")
                await asyncio.sleep(0.01)
        await engine.run_until_idle()
        assert await asyncio.to_thread(wait_gone, pids, 5.0) == []
        state = await assert_consistent(engine, job_id)
        assert state.status is JobStatus.FAILED
        error = state.errors[-1]
        assert (error.code, error.step) == ("StepTimeout:broll", "broll")
        assert error.correlation_id == state.correlation_id
        assert temp_files(engine.settings.job_dir(job_id)) == []


async def test_the_settings_timeout_applies_when_the_job_sets_none(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, step_timeouts={"mux": 0.5})
    async with await Engine.open(settings, pipeline=pipeline(mux=sleep_step(60))) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        assert (await engine.get(job_id)).errors[-1].code == "StepTimeout:mux"


async def test_a_step_warning_is_recorded(tmp_path: Path) -> None:
    async def warns(ctx: StepContext) -> list[Artifact]:
        await ctx.warn("EncoderFallback", "no GPU; using libx264")
        return []

    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline(preflight=warns)) as e:
        job_id = (await e.submit(DRAFT)).job.job_id
        await e.run_until_idle()
        state = await assert_consistent(e, job_id)
        assert [(w.code, w.step) for w in state.warnings] == [("EncoderFallback", "preflight")]
        assert state.status is JobStatus.SUCCEEDED


async def test_submit_with_the_same_key_returns_the_same_job(tmp_path: Path) -> None:
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        first, second = await asyncio.gather(
            engine.submit(DRAFT, idempotency_key="key-1"),
            engine.submit(DRAFT, idempotency_key="key-1"),
        )
        assert first.job.job_id == second.job.job_id
        assert sorted([first.duplicate, second.duplicate]) == [False, True]
        again = await engine.submit(
            JobRequest(options=Options(quality="draft")), idempotency_key="key-1"
        )
        assert again.duplicate and again.job.job_id == first.job.job_id
        with pytest.raises(Conflict):
            await engine.submit(JobRequest(), idempotency_key="key-1")
        other = await engine.submit(DRAFT, idempotency_key="key-2")
        assert other.job.job_id != first.job.job_id
        await engine.run_until_idle()
        records = await engine.log.read(first.job.job_id)
        assert types_of(records).count("JobCreated") == 1
        assert types_of(records).count("JobStarted") == 1
        assert len(await engine.list_jobs()) == 2


async def test_unknown_jobs_are_not_found(tmp_path: Path) -> None:
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        for call in (engine.get, engine.cancel, engine.retry, engine.rerun):
            with pytest.raises(JobNotFound):
                await call("nope")


async def test_rerun_creates_a_new_job_with_the_same_inputs(tmp_path: Path) -> None:
    request = JobRequest(options=Options(quality="draft", timeouts={"mux": 30.0}))
    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline()) as engine:
        original = (await engine.submit(request)).job
        await engine.run_until_idle()
        rerun = await engine.rerun(original.job_id)
        assert rerun.job_id != original.job_id and rerun.status is JobStatus.QUEUED
        assert rerun.correlation_id != original.correlation_id
        await engine.run_until_idle()
        first = (await engine.log.read(original.job_id))[0].event
        again = (await engine.log.read(rerun.job_id))[0].event
        assert isinstance(first, JobCreated) and isinstance(again, JobCreated)
        assert (again.preset, again.brief, again.options) == (
            first.preset,
            first.brief,
            first.options,
        )
        assert again.rerun_of == original.job_id
        assert (await assert_consistent(engine, rerun.job_id)).status is JobStatus.SUCCEEDED


async def test_a_runner_whose_job_is_written_elsewhere_stops(tmp_path: Path) -> None:
    gates: dict[str, asyncio.Event] = {}

    async def gated_progress(ctx: StepContext) -> list[Artifact]:
        await gates.setdefault(ctx.job_id, asyncio.Event()).wait()
        await asyncio.sleep(0.3)
        await ctx.progress(50, "half", None)  # the stale append
        return []

    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=gated_progress)
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        started = await wait_for(engine.log, job_id, is_type("StepStarted", "broll"))
        # Another writer appends to the job behind the runner's back.
        await engine.log.append(
            job_id, [JobWarning(code="Other", message="another writer")], started.version
        )
        gates.setdefault(job_id, asyncio.Event()).set()
        await engine.run_until_idle()
        records = await engine.log.read(job_id)
        assert types_of(records)[-1] == "JobWarning"  # nothing after the other writer's event
        assert not any(isinstance(r.event, JobSucceeded) for r in records)
        with pytest.raises(ConcurrencyError):
            await engine.log.append(job_id, [JobWarning(code="x", message="y")], started.version)


async def test_a_step_that_cancels_itself_fails_its_job_as_internal(tmp_path: Path) -> None:
    async def cancels_itself(ctx: StepContext) -> list[Artifact]:
        raise asyncio.CancelledError  # nobody asked: not a cancel of the job, not a stop

    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=cancels_itself)
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
    assert state.status is JobStatus.FAILED
    assert state.step("broll").status is StepStatus.FAILED
    assert (state.errors[-1].code, state.errors[-1].message) == (
        "Internal",
        "step broll stopped on its own",
    )


async def test_a_queued_append_that_fails_stops_the_step_and_fails_the_job(
    tmp_path: Path,
) -> None:
    finished: list[str] = []

    async def warns_then_works(ctx: StepContext) -> list[Artifact]:
        await ctx.warn("Test", "a warning the log refuses")  # queued: the step goes on at once
        await asyncio.sleep(TIMEOUT * 2)  # stopped long before, when the warning's commit fails
        finished.append(ctx.step)
        return []

    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=warns_then_works)
    ) as engine:
        with sqlite3.connect(_sqlite(engine).path) as conn:
            conn.execute(
                "CREATE TRIGGER refuse_warnings BEFORE INSERT ON events "
                "WHEN NEW.type = 'JobWarning' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        job_id = (await engine.submit(DRAFT)).job.job_id
        async with asyncio.timeout(TIMEOUT):
            await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
    assert finished == []
    assert state.status is JobStatus.FAILED
    error = state.errors[-1]
    assert error.code == "Internal" and error.details["exception"] == "append failed: refused"
    assert state.step("broll").status is StepStatus.FAILED  # the step running when it failed
    assert state.step("subtitles").status is StepStatus.PENDING


async def test_a_failure_the_log_refuses_at_first_is_recorded_once_it_takes_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def warns(ctx: StepContext) -> list[Artifact]:
        await ctx.warn("Test", "a warning the log refuses")
        await asyncio.sleep(TIMEOUT * 2)  # stopped when the warning's commit fails
        return []

    async with await Engine.open(settings_for(tmp_path), pipeline=pipeline(broll=warns)) as engine:
        with sqlite3.connect(_sqlite(engine).path) as conn:  # as a full disk would, for a while
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type IN "
                "('JobWarning', 'JobFailed') BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        job_id = (await engine.submit(DRAFT)).job.job_id
        await until(lambda: "cannot record its failure yet" in caplog.text)
        assert (await engine.get(job_id)).status is JobStatus.RUNNING
        refused = engine.unrecorded(job_id)  # what the log does not say yet, told
        assert refused is not None and refused.code == "LogUnwritable", refused
        assert engine.log_refusal() is not None
        with pytest.raises(AuraError) as retried:  # not 409: the failure is only unrecorded
            await engine.retry(job_id)
        assert retried.value.code == "LogUnwritable"
        with sqlite3.connect(_sqlite(engine).path) as conn:
            conn.execute("DROP TRIGGER refuse")
        async with asyncio.timeout(TIMEOUT):
            await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
        assert engine.unrecorded(job_id) is None and engine.log_refusal() is None
        assert state.status is JobStatus.FAILED
        assert state.step("broll").status is StepStatus.FAILED
        assert (await engine.retry(job_id)).status is JobStatus.QUEUED  # retry is open again


async def test_an_append_refused_while_the_output_is_probed_fails_the_job_with_its_error(
    tmp_path: Path,
) -> None:
    probing = asyncio.Event()

    async def refuse_from_now(ctx: StepContext) -> list[Artifact]:
        with sqlite3.connect(ctx.settings.data_dir / "aura.db") as conn:  # as a full disk would
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.type = 'StepSucceeded' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        return []

    async def stalled_probe(artifacts: Mapping[str, Artifact]) -> Output:
        probing.set()
        await asyncio.Event().wait()  # stopped when the queued StepSucceeded fails
        raise AssertionError("unreachable")

    settings = settings_for(tmp_path)
    async with await Engine.open(
        settings, pipeline=pipeline(mux=refuse_from_now), output_probe=stalled_probe
    ) as engine:
        job_id = (await engine.submit(DRAFT)).job.job_id
        async with asyncio.timeout(TIMEOUT):
            await engine.run_until_idle()
        with sqlite3.connect(_sqlite(engine).path) as conn:
            conn.execute("DROP TRIGGER refuse")
        state = await engine.get(job_id)
    assert probing.is_set()
    assert state.status is JobStatus.FAILED  # not Canceled: nobody asked for a cancel
    assert state.errors[-1].details["exception"] == "append failed: refused"


def _sqlite(engine: Engine) -> EventLog:
    """The engine's SQLite log (these tests reach into its file)."""
    assert isinstance(engine.log, EventLog)
    return engine.log


def _fill_limit(conn: sqlite3.Connection, extra_pages: int) -> None:
    """Let the database grow by `extra_pages` pages at most, as a nearly full disk would
    (SQLite then answers SQLITE_FULL, "database or disk is full")."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


async def test_a_log_that_cannot_grow_fails_the_job_with_out_of_disk_space(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def warns_until_stopped(ctx: StepContext) -> list[Artifact]:
        for _ in range(100_000):  # stopped when an append fails
            await ctx.warn("Test", "a long warning " * 100)
            await asyncio.sleep(0)
        return []

    async with await Engine.open(
        settings_for(tmp_path), pipeline=pipeline(broll=warns_until_stopped)
    ) as engine:
        await _sqlite(engine).run_on_writer(lambda conn: _fill_limit(conn, 0))
        job_id = (await engine.submit(DRAFT)).job.job_id  # fits in the pages there are
        await until(lambda: "run failed" in caplog.text)  # an append found the log full
        # its failure is recorded at once if it fits, else once there is space again
        await _sqlite(engine).run_on_writer(lambda conn: _fill_limit(conn, 1000))
        async with asyncio.timeout(TIMEOUT):
            await engine.run_until_idle()
        state = await assert_consistent(engine, job_id)
    assert state.status is JobStatus.FAILED
    assert state.step("broll").status is StepStatus.FAILED
    error = state.errors[-1]
    assert error.code == "OutOfDiskSpace" and "full" in error.message, error
