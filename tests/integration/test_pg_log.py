"""The PostgreSQL log's own guarantees: global order while an append's transaction is held open,
live tails across processes woken by NOTIFY, a dropped listening connection, the database
refusing changes to events, and the schema story. (tests/integration/test_event_log.py runs the
store's shared contract on both backends.)"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from aura.projections.events import JobCreated, JobStarted, Recorded, StepProgressed
from aura.store import ConcurrencyError, CorruptEvent, StoreError
from aura.store.errors import LogUnreadable, StoreUnavailable
from aura.store.pg.batch import APPEND_LOCK, CHANNEL
from aura.store.pg.listener import Listener
from aura.store.pg.log import PgEventLog
from aura.store.pg.schema import MIGRATIONS
from aura.tests.runner_support import until
from aura.tests.tcp_proxy import TcpProxy

TIMEOUT = 20.0


def created() -> JobCreated:
    return JobCreated(preset="sample-hello-youtube", steps=("mux",), correlation_id="c")


def progress(n: int) -> StepProgressed:
    return StepProgressed(step="mux", pct=float(n % 100))


async def collect(log: PgEventLog, count: int, job_id: str | None = None) -> list[Recorded]:
    """The first `count` events a subscription to `log` yields."""
    seen: list[Recorded] = []
    async with aclosing(log.subscribe(0, job_id)) as stream:
        async for rec in stream:
            seen.append(rec)
            if len(seen) == count:
                return seen
    raise AssertionError("the subscription ended early")


class SeqWatcher:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self._told = asyncio.Event()

    def on_events(self, recorded: list[Recorded]) -> None:
        self.seqs += [r.seq for r in recorded]
        self._told.set()

    async def reached(self, count: int) -> None:
        """Return once `count` events have been told."""
        while len(self.seqs) < count:
            self._told.clear()
            await self._told.wait()

    def on_commit(self) -> None:
        pass

    def on_end(self) -> None:
        pass


async def test_appends_behind_an_open_transaction_wait_and_no_reader_skips_a_seq(
    pg_url: str,
) -> None:
    """A transaction that took its seq as the store does, held open: later appends (of another
    process's log) wait for it, so when they commit every tail, subscription and watcher sees
    every seq once, in order, the held one included."""
    writer, reader = await PgEventLog.open(pg_url), await PgEventLog.open(pg_url)
    raw = await asyncpg.connect(pg_url)
    try:
        await writer.append("a", [created()], 0)
        watcher = SeqWatcher()
        reader.watch("held", watcher)
        total = 1 + 1 + 20  # a's JobCreated, the held row, 20 later appends
        subscribed = asyncio.create_task(collect(reader, total))
        held_only = asyncio.create_task(collect(reader, 1, job_id="held"))
        # begin an append the way store/pg/batch.py does, and hold it open
        await raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK})")
        held_seq = await raw.fetchval("SELECT coalesce(max(seq), 0) + 1 FROM events")
        await raw.execute(
            "INSERT INTO events (seq, job_id, version, type, step, attempt, ts, data) "
            "VALUES ($1, 'held', 1, 'JobCreated', NULL, 1, $2, $3::jsonb)",
            held_seq,
            datetime.now(UTC),
            '{"type":"JobCreated","preset":"p","steps":[],"correlationId":"c"}',
        )
        later = [asyncio.ensure_future(writer.append(f"j{i}", [created()], 0)) for i in range(20)]
        # The later appends are under way but cannot commit: had they taken seqs past the held
        # one and committed, a tail would read them and move past the held seq for good.
        done, _ = await asyncio.wait(later, timeout=1.0)
        assert not done
        assert await reader.tail(after_seq=1) == []
        await raw.execute(f"SELECT pg_notify('{CHANNEL}', 'raw {held_seq}'); COMMIT")
        results = await asyncio.wait_for(asyncio.gather(*later), TIMEOUT)
        assert sorted(r[0].seq for r in results) == list(range(held_seq + 1, held_seq + 21))
        seen = await asyncio.wait_for(subscribed, TIMEOUT)
        assert [r.seq for r in seen] == list(range(1, total + 1))
        assert [r.seq for r in await reader.tail(0, 100)] == list(range(1, total + 1))
        assert [r.seq for r in await asyncio.wait_for(held_only, TIMEOUT)] == [held_seq]
        assert watcher.seqs == [held_seq]
    finally:
        await raw.close()
        await reader.close()
        await writer.close()


async def test_a_subscriber_hears_another_process_s_appends_through_notify(pg_url: str) -> None:
    writer, reader = await PgEventLog.open(pg_url), await PgEventLog.open(pg_url)
    try:
        await writer.append("a", [created()], 0)
        following = asyncio.create_task(collect(reader, 30, job_id="a"))
        for n in range(1, 30):
            await writer.append("a", [progress(n)], n)
        seen = await asyncio.wait_for(following, TIMEOUT)
        assert [r.version for r in seen] == list(range(1, 31))
        assert reader.last_seq == 30
    finally:
        await reader.close()
        await writer.close()


async def test_a_dropped_listener_reconnects_and_the_tail_catches_up_without_a_gap(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = await PgEventLog.open(pg_url), await PgEventLog.open(pg_url)
    admin = await asyncpg.connect(pg_url)
    # reconnections wait for the test's word, so the appends below surely land while nobody
    # listens: only the catch-up after reconnecting can bring them
    reconnecting, reconnect = asyncio.Event(), asyncio.Event()
    connect = Listener._connect

    async def held_back(self: Listener) -> None:
        reconnecting.set()
        await reconnect.wait()
        await connect(self)

    monkeypatch.setattr(Listener, "_connect", held_back)
    try:
        await writer.append("a", [created()], 0)
        following = asyncio.create_task(collect(reader, 60))
        for n in range(1, 20):
            await writer.append("a", [progress(n)], n)
        pid = reader.listener_pid
        assert pid is not None
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.wait_for(reconnecting.wait(), TIMEOUT)  # the drop is noticed
        assert reader.listener_pid is None
        for n in range(20, 60):
            await writer.append("a", [progress(n)], n)
        assert not following.done()
        reconnect.set()
        seen = await asyncio.wait_for(following, TIMEOUT)
        assert [r.seq for r in seen] == list(range(1, 61))
        assert reader.listener_connections == 2 and reader.listener_pid != pid
    finally:
        await admin.close()
        await reader.close()
        await writer.close()


async def test_the_database_refuses_update_delete_and_truncate_of_events(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        await log.append("a", [created()], 0)
        conn = await asyncpg.connect(pg_url)
        try:
            for sql in ("UPDATE events SET job_id = 'b'", "DELETE FROM events", "TRUNCATE events"):
                with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="refused"):
                    await conn.execute(sql)
        finally:
            await conn.close()
        assert len(await log.read("a")) == 1


async def test_a_duplicate_version_from_another_writer_is_a_concurrency_error(
    pg_url: str,
) -> None:
    async with await PgEventLog.open(pg_url) as log:
        await log.append("a", [created()], 0)
        with pytest.raises(ConcurrencyError) as caught:
            await log.append("a", [JobStarted()], 0)
        assert (caught.value.expected, caught.value.actual) == (0, 1)


async def test_columns_are_readable_and_corrupt_rows_name_their_seq(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        await log.append("a", [created(), JobStarted()], 0)
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT seq, job_id, version, type, step, attempt FROM events")
            assert [tuple(r) for r in rows] == [
                (1, "a", 1, "JobCreated", None, 1),
                (2, "a", 2, "JobStarted", None, 1),
            ]
            bogus = '{"type":"Bogus"}'
            await conn.execute(
                "INSERT INTO events VALUES (3, 'a', 3, 'Bogus', NULL, 1, now(), $1)", bogus
            )
        finally:
            await conn.close()
        with pytest.raises(CorruptEvent, match="seq 3"):
            await log.read("a")


async def test_an_append_the_database_refuses_fails_alone(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(
                "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.job_id = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;"
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON events FOR EACH ROW "
                "EXECUTE FUNCTION refuse_boom()"
            )
        finally:
            await conn.close()
        ok, refused = await asyncio.gather(
            log.append("ok", [created()], 0),
            log.append("boom", [created()], 0),
            return_exceptions=True,
        )
        assert isinstance(refused, StoreError) and "refused" in str(refused)
        assert not isinstance(ok, BaseException) and [r.version for r in ok] == [1]
        assert [r.version for r in await log.append("ok", [JobStarted()], 1)] == [2]


async def test_a_schema_newer_than_this_build_is_refused_as_log_unreadable(pg_url: str) -> None:
    await (await PgEventLog.open(pg_url)).close()
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT version FROM aura_schema") == len(MIGRATIONS)
        await conn.execute("UPDATE aura_schema SET version = 999")
    finally:
        await conn.close()
    with pytest.raises(LogUnreadable, match="schema version 999 is newer"):
        await PgEventLog.open(pg_url)


async def test_opening_a_new_database_from_many_places_at_once(pg_url: str) -> None:
    logs = await asyncio.gather(*(PgEventLog.open(pg_url) for _ in range(4)))
    for log in logs:
        await log.close()
    async with await PgEventLog.open(pg_url, readonly=True) as readonly:
        assert await readonly.max_seq() == 0
        with pytest.raises(StoreError, match="read-only"):
            readonly.append_nowait("a", [created()], 0)


async def test_appends_go_on_after_the_writer_s_connection_is_cut(pg_url: str) -> None:
    async with await PgEventLog.open(pg_url) as log:
        await log.append("a", [created()], 0)
        writer = log._writer_conn
        assert writer is not None
        admin = await asyncpg.connect(pg_url)
        try:
            closed = asyncio.Event()
            writer.add_termination_listener(lambda _conn: closed.set())
            pid = writer.get_server_pid()
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await asyncio.wait_for(closed.wait(), TIMEOUT)
        finally:
            await admin.close()
        assert [r.version for r in await log.append("a", [JobStarted()], 1)] == [2]
        assert [r.version for r in await log.read("a")] == [1, 2]


async def test_a_database_that_stops_answering_is_unavailable_until_it_answers_again(
    pg_url: str,
) -> None:
    proxy, url = await TcpProxy.to(pg_url)
    try:
        async with await PgEventLog.open(url) as log:
            await log.append("a", [created()], 0)
            assert log.unreachable_since is None
            await proxy.down()
            await until(lambda: log.unreachable_since is not None)  # its listener was cut
            for call in (
                log.append("a", [JobStarted()], 1),
                log.read("a"),
                log.jobs_table.page(),
                log.jobs_table.get("a"),
            ):
                with pytest.raises(StoreUnavailable, match="Connect call failed"):
                    await call
            await proxy.up()
            await until(lambda: log.unreachable_since is None)  # it reconnects by itself
            assert [r.version for r in await log.append("a", [JobStarted()], 1)] == [2]
            row = await log.jobs_table.get("a")
            assert row is not None and row.status.value == "Running"
    finally:
        await proxy.down()


async def test_a_subscription_from_the_head_reads_no_backlog(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every later commit of every process is told to it: it has nothing to read, and gets
    # what another process commits (told through NOTIFY); one from behind reads its backlog
    async with await PgEventLog.open(pg_url) as log, await PgEventLog.open(pg_url) as other:
        (created_a,) = await log.append("a", [created()], 0)
        reads: list[int] = []
        read_job_after_seq = log.read_job_after_seq

        async def counted(job_id: str, after_seq: int, limit: int) -> list[Recorded]:
            reads.append(after_seq)
            return await read_job_after_seq(job_id, after_seq, limit)

        monkeypatch.setattr(log, "read_job_after_seq", counted)
        async with aclosing(log.subscribe(log.last_seq, job_id="a")) as events:
            first = asyncio.ensure_future(anext(events))
            (started,) = await other.append("a", [JobStarted()], 1)
            assert await asyncio.wait_for(first, TIMEOUT) == started
        assert reads == []
        async with aclosing(log.subscribe(0, job_id="a")) as behind:
            assert await asyncio.wait_for(anext(behind), TIMEOUT) == created_a
        assert reads == [0]


class ReplyCutter:
    """A TCP proxy to the PostgreSQL server. After `cut_next_reply()`, the next connection to
    send a request loses its reply: the server gets the request whole and answers it (commits
    it), then the proxy closes the client's side before the answer's end (ReadyForQuery)
    reaches it."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._armed = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.cut = asyncio.Event()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def cut_next_reply(self) -> None:
        self._armed = True

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._upstream)
        doomed = False

        async def requests() -> None:
            nonlocal doomed
            while data := await client_r.read(65536):
                if self._armed:
                    self._armed, doomed = False, True
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def replies() -> None:
            held = b""
            while data := await server_r.read(65536):
                if doomed:
                    held += data
                    if b"Z\x00\x00\x00\x05" in held:  # ReadyForQuery: it is answered
                        client_w.transport.abort()
                        server_w.close()
                        self.cut.set()
                        return
                    continue
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        for pump in (requests(), replies()):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def test_an_append_whose_reply_the_connection_lost_after_its_commit_succeeds(
    pg_url: str,
) -> None:
    parts = urlsplit(pg_url)
    assert parts.hostname is not None and parts.port is not None
    proxy = ReplyCutter(parts.hostname, parts.port)
    port = await proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))
    try:
        async with await PgEventLog.open(proxied) as log:
            await log.append("a", [created()], 0)
            proxy.cut_next_reply()
            started = await log.append("a", [JobStarted()], 1)
            assert proxy.cut.is_set()  # its reply was lost: it was found in the log
            assert [r.version for r in started] == [2]
            assert [r.version for r in await log.append("a", [progress(1)], 2)] == [3]
            records = await log.read("a")
            assert records[1:2] == started  # once, as the append returned it
            assert [r.type for r in records] == ["JobCreated", "JobStarted", "StepProgressed"]
    finally:
        await proxy.close()


async def test_two_processes_appending_at_once_leave_gapless_seqs_seen_in_order(
    pg_url: str,
) -> None:
    first, second = await PgEventLog.open(pg_url), await PgEventLog.open(pg_url)
    try:
        await first.append("shared", [created()], 0)
        watcher = SeqWatcher()
        first.watch("shared", watcher)

        async def writer(log: PgEventLog, name: str) -> None:
            await log.append(name, [created()], 0)
            for n in range(1, 21):
                await log.append(name, [progress(n)], n)
                while True:  # both write the shared job: a stale version is read again
                    version = len(await log.read("shared"))
                    try:
                        await log.append("shared", [progress(n)], version)
                        break
                    except ConcurrencyError:
                        pass

        await asyncio.gather(writer(first, "one"), writer(second, "two"))
        stored = await first.tail(0, 1000)
        assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
        shared = [r.version for r in await first.read("shared")]
        assert shared == list(range(1, 42))
        seen = await asyncio.wait_for(collect(second, len(stored)), TIMEOUT)
        assert [r.seq for r in seen] == [r.seq for r in stored]
        # the other process's appends reach the watcher too (by NOTIFY), each once, in order
        await asyncio.wait_for(watcher.reached(40), TIMEOUT)
        assert watcher.seqs == [r.seq for r in stored if r.job_id == "shared"][1:]
    finally:
        await second.close()
        await first.close()
