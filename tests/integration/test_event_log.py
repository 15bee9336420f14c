"""The event log, on a real SQLite file and on PostgreSQL (the shared contract runs on both; the
SQLite-only tests reach into its file, WAL and threads, and tests/integration/test_pg_log.py has
PostgreSQL's own): append, read, subscribe, concurrency, durability."""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import sys
import threading
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from aura.projections.events import JobCreated, JobStarted, Recorded, StepProgressed, StepStarted
from aura.store import (
    ConcurrencyError,
    CorruptEvent,
    DatabaseMissing,
    Durability,
    EventLog,
    StoreError,
)
from aura.store import batch as batch_module
from aura.store import checkpoint as checkpoint_module
from aura.store import subscriptions as subscriptions_module
from aura.store.interface import EventStore, open_event_store
from aura.store.pg import batch as pg_batch_module
from aura.store.schema import MIGRATIONS
from aura.tests.conftest import OpenLog
from aura.tests.pg_support import new_schema_url

STEPS = ("preflight", "mux")
TIMEOUT = 10.0


def created(**kwargs: object) -> JobCreated:
    return JobCreated(preset="sample-hello-youtube", steps=STEPS, correlation_id="c", **kwargs)  # type: ignore[arg-type]


def progress(n: int) -> StepProgressed:
    return StepProgressed(step="mux", pct=float(n % 100))


async def test_append_returns_stored_events_with_global_seq(log: EventStore) -> None:
    first = await log.append("a", [created(), JobStarted()], expected_version=0)
    second = await log.append("b", [created()], expected_version=0)
    assert [(r.seq, r.job_id, r.version) for r in first] == [(1, "a", 1), (2, "a", 2)]
    assert [(r.seq, r.version) for r in second] == [(3, 1)]
    assert await log.read("a") == first
    assert await log.read("a", after_version=1) == first[1:]
    assert await log.tail(after_seq=1) == [first[1], *second]
    assert await log.max_seq() == 3


async def test_columns_are_readable_with_plain_sqlite(sqlite_log: EventLog) -> None:
    await sqlite_log.append("a", [created(), JobStarted(), StepStarted(step="mux")], 0)
    with sqlite3.connect(sqlite_log.path) as conn:
        rows = conn.execute(
            "SELECT seq, job_id, version, type, step, attempt FROM events"
        ).fetchall()
        ts, data = conn.execute("SELECT ts, data FROM events WHERE seq = 3").fetchone()
    assert rows == [
        (1, "a", 1, "JobCreated", None, 1),
        (2, "a", 2, "JobStarted", None, 1),
        (3, "a", 3, "StepStarted", "mux", 1),
    ]
    assert ts.endswith("Z") and len(ts) == len("2026-01-01T00:00:00.000000Z")
    assert '"type":"StepStarted"' in data


async def test_stale_writer_gets_a_concurrency_error_and_appends_nothing(log: EventStore) -> None:
    await log.append("a", [created()], 0)
    await log.append("a", [JobStarted()], 1)
    with pytest.raises(ConcurrencyError) as caught:
        await log.append("a", [JobStarted(), StepStarted(step="mux")], 1)
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert [r.version for r in await log.read("a")] == [1, 2]


async def test_group_commit_gives_each_append_its_own_result(log: EventStore) -> None:
    await log.append("stale", [created()], 0)
    tasks = [log.append(f"job{i}", [created()], 0) for i in range(50)]
    tasks.append(log.append("stale", [JobStarted()], 0))  # stale: the job is at version 1
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[-1], ConcurrencyError)
    stored = [r for result in results[:-1] for r in result]  # type: ignore[union-attr]
    assert sorted(r.seq for r in stored) == list(range(2, 52))
    assert all(r.version == 1 for r in stored)


async def test_two_appends_to_one_job_in_one_batch_chain_versions(log: EventStore) -> None:
    await log.append("a", [created()], 0)
    ok, stale = await asyncio.gather(
        log.append("a", [JobStarted()], 1),
        log.append("a", [JobStarted()], 1),
        return_exceptions=True,
    )
    assert not isinstance(ok, BaseException)
    assert isinstance(stale, ConcurrencyError)
    assert [r.version for r in await log.read("a")] == [1, 2]


async def test_update_and_delete_are_refused(sqlite_log: EventLog) -> None:
    await sqlite_log.append("a", [created()], 0)
    with sqlite3.connect(sqlite_log.path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
            conn.execute("UPDATE events SET job_id = 'b'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
            conn.execute("DELETE FROM events")
    assert len(await sqlite_log.read("a")) == 1


async def test_subscriber_started_during_appends_sees_each_event_once_in_order(
    log: EventStore,
) -> None:
    await log.append("a", [created()], 0)
    total = 400

    async def appender() -> None:
        for n in range(1, total):
            await log.append("a", [progress(n)], n)

    async def subscriber() -> list[int]:
        seen = []
        async with aclosing(log.subscribe(after_seq=0, job_id="a")) as stream:
            async for rec in stream:
                seen.append(rec.seq)
                if rec.version == total:
                    return seen
        raise AssertionError("subscription ended early")

    writing = asyncio.create_task(appender())
    await asyncio.sleep(0)  # let the appender start: the backlog and live events overlap
    seen = await asyncio.wait_for(subscriber(), timeout=30)
    await writing
    assert seen == [r.seq for r in await log.read("a")]


async def test_subscription_filters_by_job_and_resumes_after_seq(log: EventStore) -> None:
    a = await log.append("a", [created(), JobStarted()], 0)
    await log.append("b", [created()], 0)
    seen = []
    async with aclosing(log.subscribe(after_seq=a[0].seq, job_id="a")) as stream:
        async for rec in stream:
            seen.append(rec.seq)
            if len(seen) == 1:
                await log.append("b", [JobStarted()], 1)
                await log.append("a", [StepStarted(step="mux")], 2)
            if len(seen) == 2:
                break
    assert seen == [a[1].seq, 5]
    assert log.subscriber_count == 0


async def test_slow_subscriber_falls_back_to_the_log_without_loss(
    log: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriptions_module, "SUBSCRIBER_BUFFER", 5)
    await log.append("a", [created()], 0)
    stream = log.subscribe(after_seq=0, job_id="a")
    assert (await anext(stream)).version == 1
    for n in range(1, 60):  # overflows the subscriber's buffer while it is not reading
        await log.append("a", [progress(n)], n)
    rest = [(await anext(stream)).version for _ in range(59)]
    await stream.aclose()
    assert rest == list(range(2, 61))


async def test_a_polling_subscriber_gets_what_another_writer_put_between_pushes(
    tmp_path: Path,
) -> None:
    log = await EventLog.open(tmp_path, poll_interval=30.0)  # a poll that would come too late
    other = await EventLog.open(tmp_path)  # another writer, as another process has
    try:
        await log.append("a", [created()], 0)
        stream = log.subscribe(after_seq=0, job_id="a")
        assert (await anext(stream)).version == 1
        await other.append("a", [JobStarted()], 1)  # no push reaches `log` for this one
        await log.append("a", [StepStarted(step="mux")], 2)  # this one pushes
        async with asyncio.timeout(5):
            assert [(await anext(stream)).version for _ in range(2)] == [2, 3]
        await stream.aclose()
    finally:
        await other.close()
        await log.close()


async def test_events_pushed_before_the_log_closes_are_delivered(open_log: OpenLog) -> None:
    log = await open_log()
    await log.append("a", [created()], 0)
    stream = log.subscribe(after_seq=0, job_id="a")
    assert (await anext(stream)).version == 1
    await log.append("a", [JobStarted()], 1)  # pushed to the subscriber, not read yet
    await log.close()
    assert [rec.version async for rec in stream] == [2]


async def test_close_ends_subscriptions(open_log: OpenLog) -> None:
    log = await open_log()
    await log.append("a", [created()], 0)
    seen = []
    following = asyncio.Event()

    async def follow() -> None:
        async for rec in log.subscribe():
            seen.append(rec.seq)
            following.set()

    task = asyncio.create_task(follow())
    await asyncio.wait_for(following.wait(), timeout=5)
    await log.close()
    await asyncio.wait_for(task, timeout=5)
    assert seen == [1]


async def test_a_queued_append_commits_only_if_the_one_queued_before_it_did(
    log: EventStore,
) -> None:
    await log.append("a", [created()], 0)
    other = log.append_nowait("a", [progress(1)], 1)  # another writer takes version 2 first
    first = log.append_nowait("a", [progress(2)], 1)  # so this one is stale
    # ... and this one, expecting the version `first` would have reached, must not commit,
    # although the other writer happened to bring the job to it.
    second = log.append_nowait("a", [progress(3)], 2, after=first)
    results = await asyncio.gather(
        other.future, first.future, second.future, return_exceptions=True
    )
    assert [rec.version for rec in results[0]] == [2]  # type: ignore[union-attr]
    assert isinstance(results[1], ConcurrencyError)
    assert isinstance(results[2], StoreError) and not isinstance(results[2], ConcurrencyError)
    assert "queued before this one failed" in str(results[2])
    assert [rec.version for rec in await log.read("a")] == [1, 2]
    chained = log.append_nowait("a", [progress(4)], 2)
    after_it = log.append_nowait("a", [progress(5), progress(6)], 3, after=chained)
    assert [rec.version for rec in await after_it.future] == [4, 5]
    assert [rec.version for rec in await chained.future] == [3]


async def test_appends_wait_for_a_function_running_on_the_writer(sqlite_log: EventLog) -> None:
    await sqlite_log.append("a", [created()], 0)
    entered, release = threading.Event(), threading.Event()

    def hold_the_writer(conn: sqlite3.Connection) -> int:
        entered.set()
        release.wait(TIMEOUT)
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    holding = asyncio.create_task(sqlite_log.run_on_writer(hold_the_writer))
    await asyncio.to_thread(entered.wait, TIMEOUT)
    appending = sqlite_log.append("a", [JobStarted()], 1)
    for _ in range(50):  # a free writer would have committed it within a turn or two
        await asyncio.sleep(0)
    assert not appending.done()
    release.set()
    assert await holding == 1  # the function saw the log as it was before the append
    assert [rec.version for rec in await appending] == [2]


async def test_the_writer_remembers_a_bounded_number_of_job_versions(
    log: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_module, "VERSION_CACHE_JOBS", 3)
    monkeypatch.setattr(pg_batch_module, "VERSION_CACHE_JOBS", 3)
    for n in range(5):
        await log.append(f"job{n}", [created()], 0)
    writer = log._batches  # type: ignore[attr-defined]
    assert writer is not None
    assert len(writer._versions) == 3  # the two oldest were forgotten
    # A forgotten job's version is looked up again: its next append still checks it.
    with pytest.raises(ConcurrencyError):
        await log.append("job0", [JobStarted()], 5)
    assert [rec.version for rec in await log.append("job0", [JobStarted()], 1)] == [2]


class Watcher:
    def __init__(self, *, broken: bool = False) -> None:
        self.seen: list[int] = []
        self.commits: list[list[int]] = []  # what it had seen at each on_commit
        self.ended = 0
        self.broken = broken

    def on_events(self, recorded: list[Recorded]) -> None:
        if self.broken:
            raise RuntimeError("a bug in the watcher")
        self.seen += [rec.seq for rec in recorded]

    def on_commit(self) -> None:
        self.commits.append(list(self.seen))

    def on_end(self) -> None:
        self.ended += 1


async def test_watchers_get_their_jobs_appends_at_commit(open_log: OpenLog, caplog: Any) -> None:
    log = await open_log()
    await log.append("a", [created()], 0)
    watcher, broken, gone = Watcher(), Watcher(broken=True), Watcher()
    assert log.watch("a", watcher) == 1  # everything after seq 1 reaches it
    log.watch("a", broken)
    log.watch("a", gone)
    log.unwatch("a", gone)
    batch = [
        log.append("a", [JobStarted()], 1),
        log.append("b", [created()], 0),
        log.append("a", [progress(1), progress(2)], 2),
    ]
    results = await asyncio.gather(*batch)  # one group commit; the broken watcher fails nothing
    assert [[r.seq for r in result] for result in results] == [[2], [3], [4, 5]]
    assert watcher.seen == [2, 4, 5]
    assert watcher.commits == [[2, 4, 5]]  # told once, after both of the commit's appends
    assert broken.ended == 1 and "a watcher of job a failed" in caplog.text
    assert broken.commits == []
    (rec,) = await log.append("a", [progress(3)], 4)
    assert watcher.seen[-1] == rec.seq  # called at the commit: before the appender resumed
    assert watcher.commits[-1] == watcher.seen
    assert gone.seen == [] and gone.commits == [] and log.subscriber_count == 1
    await log.close()
    assert (watcher.ended, broken.ended, gone.ended) == (1, 1, 0)


async def test_a_watcher_that_fails_as_it_ends_fails_no_append(
    open_log: OpenLog, caplog: Any
) -> None:
    class FailsTwice(Watcher):
        def on_events(self, recorded: list[Recorded]) -> None:
            raise RuntimeError("a bug in the watcher")

        def on_end(self) -> None:
            raise RuntimeError("another bug in the watcher")

    async with await open_log() as log:
        await log.append("a", [created()], 0)
        await log.append("b", [created()], 0)
        log.watch("a", FailsTwice())
        async with asyncio.timeout(5):  # both appends of the commit settle
            done = await asyncio.gather(
                log.append("a", [JobStarted()], 1), log.append("b", [JobStarted()], 1)
            )
        assert [rec.version for result in done for rec in result] == [2, 2]
        assert "failed as its watch ended" in caplog.text
        log.watch("a", FailsTwice())  # and one the closing log ends
    assert "failed as its watch ended" in caplog.text


async def test_a_watcher_that_fails_at_the_end_of_a_commit_is_dropped(
    open_log: OpenLog, caplog: Any
) -> None:
    class FailsAtCommit(Watcher):
        def on_commit(self) -> None:
            raise RuntimeError("a bug in the watcher")

    async with await open_log() as log:
        await log.append("a", [created()], 0)
        failing, fine = FailsAtCommit(), Watcher()
        log.watch("a", failing)
        log.watch("a", fine)
        await log.append("a", [JobStarted()], 1)  # the append itself succeeds
        assert failing.ended == 1 and "a watcher of job a failed" in caplog.text
        await log.append("a", [progress(1)], 2)
        assert failing.seen == [2]  # not called again
        assert fine.commits == [[2], [2, 3]] and fine.ended == 0


async def test_no_garbage_collection_runs_between_a_commit_and_its_watchers(
    tmp_path: Path,
) -> None:
    """A collection made due inside a commit waits until the watchers have written; the
    collector is on again after (and stays off if the application had turned it off)."""

    class Recording(Watcher):
        def __init__(self) -> None:
            super().__init__()
            self.collecting: list[bool] = []

        def on_events(self, recorded: list[Recorded]) -> None:
            super().on_events(recorded)
            self.collecting.append(gc.isenabled())

        def on_commit(self) -> None:
            super().on_commit()
            self.collecting.append(gc.isenabled())

    async with await EventLog.open(tmp_path) as log:
        await log.append("a", [created()], 0)
        watcher = Recording()
        log.watch("a", watcher)
        assert gc.isenabled()
        await log.append("a", [JobStarted()], 1)
        assert watcher.collecting == [False, False] and gc.isenabled()
        gc.disable()
        try:
            await log.append("a", [progress(1)], 2)
            assert not gc.isenabled()
        finally:
            gc.enable()
        assert watcher.seen == [2, 3]


async def test_reopened_database_keeps_everything(open_log: OpenLog) -> None:
    log = await open_log()
    stored = await log.append("a", [created(), JobStarted()], 0)
    await log.close()
    reopened = await open_log()
    try:
        assert await reopened.read("a") == stored
        assert (await reopened.append("a", [StepStarted(step="mux")], 2))[0].seq == 3
    finally:
        await reopened.close()


_WRITER = """
import asyncio, sys
from pathlib import Path
from aura.projections.events import JobCreated, StepProgressed
from aura.store.interface import open_event_store

async def main():
    log = await open_event_store(Path(sys.argv[1]), sys.argv[2] or None)
    await log.append("a", [JobCreated(preset="p", steps=("mux",), correlation_id="c")], 0)
    version = 1
    while True:
        results = await asyncio.gather(*[
            log.append(f"j{version}-{i}", [JobCreated(preset="p", steps=(), correlation_id="c")], 0)
            for i in range(5)
        ], log.append("a", [StepProgressed(step="mux", pct=1.0)], version))
        version += 1
        print(max(r[-1].seq for r in results), flush=True)

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest) -> str | None:
    """Where a test's log is, for `open_event_store`: None (the data folder's aura.db), or a
    PostgreSQL URL of its own."""
    if request.param == "sqlite":
        return None
    return await new_schema_url(request.getfixturevalue("pg_database"))


async def test_acknowledged_appends_survive_sigkill(
    tmp_path: Path, database_url: str | None
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WRITER,
        str(tmp_path),
        database_url or "",
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    acknowledged = [int(await child.stdout.readline()) for _ in range(50)]
    child.kill()
    await child.wait()
    log = await open_event_store(tmp_path, database_url)
    try:
        assert await log.max_seq() >= acknowledged[-1]
        versions = [r.version for r in await log.read("a")]
        assert versions == list(range(1, len(versions) + 1))
    finally:
        await log.close()


async def test_corrupt_rows_are_errors_naming_their_seq(sqlite_log: EventLog) -> None:
    await sqlite_log.append("a", [created()], 0)
    with sqlite3.connect(sqlite_log.path) as conn:
        conn.execute(
            "INSERT INTO events VALUES (2, 'a', 2, 'Bogus', NULL, 1, "
            "'2026-01-01T00:00:00.000000Z', '{\"type\":\"Bogus\"}')"
        )
        conn.execute(
            "INSERT INTO events VALUES (3, 'b', 1, 'JobStarted', NULL, 1, "
            '\'2026-01-01T00:00:00.000000Z\', \'{"type":"JobStarted","attempt":"x"}\')'
        )
    with pytest.raises(CorruptEvent, match="seq 2"):
        await sqlite_log.read("a")
    with pytest.raises(CorruptEvent, match="seq 3") as caught:
        await sqlite_log.read("b")
    assert caught.value.seq == 3


async def test_readonly_open_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(DatabaseMissing):
        await EventLog.open(tmp_path / "nowhere", readonly=True)
    log = await EventLog.open(tmp_path)
    await log.append("a", [created()], 0)
    await log.close()
    readonly = await EventLog.open(tmp_path, readonly=True)
    try:
        assert len(await readonly.read("a")) == 1
        with pytest.raises(StoreError, match="read-only"):
            await readonly.append("a", [JobStarted()], 1)
    finally:
        await readonly.close()


async def test_readonly_open_of_a_folder_whose_name_looks_like_a_uri(tmp_path: Path) -> None:
    for name in ("copy #1", "what?", "50%3F"):
        folder = tmp_path / name
        async with await EventLog.open(folder) as log:
            await log.append("a", [created()], 0)
        async with await EventLog.open(folder, readonly=True) as readonly:
            assert len(await readonly.read("a")) == 1
    # nothing was created beside the folders (a URI cut at `#` or `?` would name another file)
    assert sorted(os.listdir(tmp_path)) == ["50%3F", "copy #1", "what?"]


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "aura.db").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError, match="cannot open the log"):
        await EventLog.open(tmp_path)


async def test_a_schema_newer_than_this_build_is_a_store_error(tmp_path: Path) -> None:
    await (await EventLog.open(tmp_path)).close()
    with sqlite3.connect(tmp_path / "aura.db") as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreError, match="schema version 999 is newer"):
        await EventLog.open(tmp_path)


async def test_opening_a_new_database_from_many_places_at_once(tmp_path: Path) -> None:
    # each open has its own connection thread: they race to migrate the new file
    for round_ in range(3):
        folder = tmp_path / str(round_)
        logs = await asyncio.gather(*(EventLog.open(folder) for _ in range(6)))
        for log in logs:
            await log.close()
        with sqlite3.connect(folder / "aura.db") as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


@pytest.mark.parametrize("where", [*Durability, "postgres"], ids=str.lower)
async def test_close_commits_what_was_queued_and_refuses_later_appends(
    tmp_path: Path, where: Durability | str, request: pytest.FixtureRequest
) -> None:
    database_url = None
    if where == "postgres":
        database_url = await new_schema_url(request.getfixturevalue("pg_database"))
    durability = where if isinstance(where, Durability) else Durability.NORMAL
    log = await open_event_store(tmp_path, database_url, durability=durability)
    queued = [log.append_nowait(f"job{i}", [created()], 0).future for i in range(300)]
    closing = asyncio.create_task(log.close())
    await asyncio.sleep(0)  # close() has begun
    refused = 0
    while not closing.done():  # appends made while the log closes: refused at once, not lost
        try:
            queued.append(log.append_nowait(f"late{refused}", [created()], 0).future)
        except StoreError:
            refused += 1
        await asyncio.sleep(0)
    await closing
    async with asyncio.timeout(5):  # every future is settled: nobody waits forever
        results = await asyncio.gather(*queued, return_exceptions=True)
    assert refused > 0 and len(results) == 300
    assert all(isinstance(r, list) and len(r) == 1 for r in results)
    readonly = await open_event_store(tmp_path, database_url, readonly=True)
    try:
        assert await readonly.max_seq() == 300
    finally:
        await readonly.close()


async def test_data_folder_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the data folder"):
        await EventLog.open(blocker / "data")


async def test_checkpoints_beside_the_writer_keep_the_wal_small(tmp_path: Path) -> None:
    # 3,000 commits of a few 4 KiB pages each: without checkpoints the WAL would pass 20 MB (the
    # writer's own, stalling, checkpoint only starts at WAL_HARD_LIMIT_PAGES, 40 MiB). The
    # checkpoints beside it let the WAL start over, so it stays far smaller.
    log = await EventLog.open(tmp_path)
    try:
        await log.append("a", [created()], 0)
        for n in range(1, 3000):
            await log.append("a", [progress(n)], n)
            if n % 100 == 0:
                frames, copied = await log.checkpoint()
                assert frames == copied  # nothing was writing meanwhile: all copied
        wal = tmp_path / "aura.db-wal"
        assert wal.stat().st_size < 2 * 1024 * 1024
    finally:
        await log.close()
    async with await EventLog.open(tmp_path, readonly=True) as readonly:
        assert [r.version for r in await readonly.read("a")] == list(range(1, 3001))


def wal_restarts(wal: Path) -> int:
    """How many times the writer has started the WAL over from its beginning: the checkpoint
    sequence number in the WAL's header, which SQLite bumps each time it does (bytes 12 to 15,
    big-endian: https://sqlite.org/fileformat.html, "WAL File Format")."""
    with wal.open("rb") as f:
        header = f.read(16)
    return int.from_bytes(header[12:16], "big") if len(header) == 16 else 0


async def test_the_wal_starts_over_under_appends_that_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkpoint beside a writer that keeps committing never copies the frames committed
    # while it runs, so on its own it never lets the WAL start over; the short second pass,
    # with commits held back, does. (Small thresholds, so a few hundred commits show it.)
    # How large the WAL grows first is not asserted: it is what the loop commits while the
    # checkpoint's thread waits for a CPU and copies, hundreds of commits more on a loaded
    # machine. Nor is it left to luck: a pass beside the writer catches up when no commit
    # happens to land while it runs (the loop not scheduled meanwhile), so here one always
    # lands, after a reader took a snapshot that no checkpoint copies past.
    monkeypatch.setattr(checkpoint_module, "CHECKPOINT_COMMITS", 100)
    monkeypatch.setattr(checkpoint_module, "WAL_RESTART_PAGES", 300)
    log = await EventLog.open(tmp_path)
    wal = tmp_path / "aura.db-wal"
    pin = sqlite3.connect(log.path, isolation_level=None)
    checkpoint_as_is = checkpoint_module.Checkpoints.checkpoint
    missed = 0

    async def checkpoint(self: checkpoint_module.Checkpoints) -> tuple[int, int]:
        nonlocal missed
        if self._writer_lock.locked() or log.closing:  # a second pass: commits held back
            return await checkpoint_as_is(self)
        pin.execute("BEGIN")
        pin.execute("SELECT max(seq) FROM events").fetchone()  # held until the pass is done
        try:
            missed += 1
            await log.append("pin", [created()] if missed == 1 else [JobStarted()], missed - 1)
            return await checkpoint_as_is(self)
        finally:
            pin.execute("COMMIT")

    monkeypatch.setattr(checkpoint_module.Checkpoints, "checkpoint", checkpoint)
    restarts = n = 0
    try:
        # the writer's own checkpoint, the backstop past WAL_HARD_LIMIT_PAGES, would start the
        # WAL over too: off, so that only the checkpoints beside the writer can
        await log.run_on_writer(lambda conn: conn.execute("PRAGMA wal_autocheckpoint=0"))
        await log.append("a", [created()], 0)
        before = wal_restarts(wal)
        # It starts over every few hundred commits (more on a loaded machine: a checkpoint's
        # thread 200 ms late on every pass takes 10,000). The limit is for a log whose
        # checkpoints never catch up: its WAL keeps every commit, about 9 KB each.
        while restarts < 2 and n < 30_000:
            n += 1
            await log.append("a", [progress(n)], n)
            if n % 10 == 0:
                restarts = wal_restarts(wal) - before
    finally:
        await log.close()
        pin.close()
    assert restarts >= 2, f"the WAL started over {restarts} times in {n} commits"
    assert missed > 0


async def test_an_append_that_cannot_be_written_fails_alone_and_the_log_goes_on(
    sqlite_log: EventLog,
) -> None:
    with sqlite3.connect(sqlite_log.path) as conn:  # refuses one job's rows, as a constraint would
        conn.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON events WHEN NEW.job_id = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    ok, refused = await asyncio.gather(
        sqlite_log.append("ok", [created()], 0),
        sqlite_log.append("boom", [created()], 0),
        return_exceptions=True,
    )
    assert isinstance(refused, StoreError) and "refused" in str(refused)
    assert not isinstance(ok, BaseException)  # its batch failed, so each append went alone
    assert [r.version for r in ok] == [1]
    assert [r.version for r in await sqlite_log.append("ok", [JobStarted()], 1)] == [2]
    assert await sqlite_log.read("boom") == []
