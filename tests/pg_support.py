"""PostgreSQL for the tests: one database per test run (created, then dropped), one schema per
test in it, so every test starts from an empty log.

The server is AURA_TEST_DATABASE_URL's, else 127.0.0.1:5432 (user postgres, trust), as this
machine kind and CI run it. When nothing answers there and PostgreSQL's programs are installed
(`make setup` installs them), a throwaway cluster is started in a temporary folder for the run.
With CI=true, no PostgreSQL at all fails the tests that need it, never skips them.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

__all__ = [
    "DEFAULT_SERVER_URL",
    "ThrowawayCluster",
    "create_test_database",
    "drop_test_database",
    "find_server",
    "new_schema_url",
    "new_schema_url_now",
]

#: the maintenance database of the test server
DEFAULT_SERVER_URL = os.environ.get(
    "AURA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _server_url(database_url: str) -> str:
    return _with_database(database_url.partition("?")[0], "postgres")


class ThrowawayCluster:
    """A PostgreSQL cluster of the test run's own, in a temporary folder (initdb, pg_ctl), on a
    free port of 127.0.0.1, trusting local connections; `stop` removes it."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="aura-pg-"))
        self._data = self._folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def bin_dir() -> Path | None:
        """Where initdb and pg_ctl are (PATH, else Debian's versioned folder), or None."""
        found = shutil.which("pg_ctl")
        if found:
            return Path(found).resolve().parent
        folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        return Path(folders[-1]) if folders else None

    def _run(self, *command: str) -> None:
        # initdb refuses to run as root: as root, the cluster belongs to the postgres user
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self._folder, user.pw_uid, user.pw_gid)
            command = ("runuser", "-u", "postgres", "--", *command)
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        bin_dir = self.bin_dir()
        assert bin_dir is not None
        self._run(str(bin_dir / "initdb"), "-D", str(self._data), "-A", "trust", "-U", "postgres")
        options = f"-p {self.port} -k {self._folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        # -l: the server's output to a file, not the pipes this process waits to close
        log = str(self._folder / "server.log")
        self._run(
            str(bin_dir / "pg_ctl"), "-D", str(self._data), "-l", log, "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        bin_dir = self.bin_dir()
        if bin_dir is not None and self._data.exists():
            self._run(str(bin_dir / "pg_ctl"), "-D", str(self._data), "-m", "immediate", "stop")
        shutil.rmtree(self._folder, ignore_errors=True)


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def find_server() -> tuple[str, ThrowawayCluster | None]:
    """The test server's URL, and the throwaway cluster started for it if one was."""
    if await _answers(DEFAULT_SERVER_URL):
        return DEFAULT_SERVER_URL, None
    if ThrowawayCluster.bin_dir() is not None and "AURA_TEST_DATABASE_URL" not in os.environ:
        cluster = ThrowawayCluster()
        try:
            cluster.start()
        except (OSError, KeyError, subprocess.SubprocessError) as e:
            cluster.stop()
            _no_server(f"no PostgreSQL answers at {DEFAULT_SERVER_URL}, nor could one start: {e}")
        return cluster.url, cluster
    _no_server(f"no PostgreSQL answers at {DEFAULT_SERVER_URL} and none is installed")
    raise AssertionError("unreachable")


def _no_server(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message + " (run `make setup`, or set AURA_TEST_DATABASE_URL)")


async def create_test_database(server_url: str) -> str:
    """A new database on the server (aura_test_<random>); its URL."""
    name = f"aura_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return _with_database(server_url, name)


async def drop_test_database(url: str) -> None:
    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(_server_url(url), timeout=10)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def new_schema_url(database_url: str) -> str:
    """A new empty schema in the test database; the URL whose connections use it."""
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return f"{database_url}?search_path={schema}"


def new_schema_url_now(database_url: str) -> str:
    """`new_schema_url` from synchronous code (a fixture), even inside a running event loop."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, new_schema_url(database_url)).result()
