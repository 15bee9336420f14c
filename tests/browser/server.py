"""A real `aura serve` in its own process, restartable on the same port and data folder, and the
small local stand-in for an OpenAI-compatible speech endpoint."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import signal
import socket
import struct
import sys
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

#: the `aura` script of the virtual environment the tests run in (`.venv/bin/aura`)
AURA_BIN = str(Path(sys.executable).parent / "aura")
#: seconds a server gets to say it is listening (a cold start imports aiohttp and opens SQLite)
START_TIMEOUT = 30.0
#: a job whose narration needs OPENAI_API_KEY (preflight fails it when no key is configured)
OPENAI_BRIEF = {
    "preset": "default",
    "brief": {"title": "Key test", "script": ["One short line.", "And another."], "tts": "openai"},
    "options": {"quality": "draft", "encoder": "x264"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AURA_ or OPENAI_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "OPENAI_"))}
    return env | extra


class AuraServer:
    """`aura serve --data-dir DATA --host 127.0.0.1 --port PORT`; `restart()` SIGKILLs it and
    starts it again on the same port and folder (a crash, then the next start)."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str], log_path: Path) -> None:
        self.data_dir = data_dir
        self.port = port
        self.env = env
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.starts += 1
        with self.log_path.open("a") as log:  # the child keeps its own copy of the descriptor
            log.write(f"--- start {self.starts} ---\n")
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                AURA_BIN,
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=self.env,
            )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        assert b"listening on " + self.url.encode() in line, (line, self.log_text())

    async def kill(self) -> None:
        """SIGKILL: no handler runs, the log is left as a crash leaves it."""
        proc = self._running()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def stop(self) -> None:
        """SIGTERM and wait: a clean stop exits 0."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            log = self.log_text()
            raise AssertionError(f"aura serve did not stop on SIGTERM:\n{log}") from None
        assert self.proc.returncode == 0, self.log_text()

    def _running(self) -> asyncio.subprocess.Process:
        assert self.proc is not None and self.proc.returncode is None, self.log_text()
        return self.proc

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    # ---- the API, as a test checks it ------------------------------------------------------

    async def get_json(self, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as resp:
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.json()

    async def post_json(self, path: str, body: dict[str, Any], status: int = 201) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, json=body) as resp,
        ):
            assert resp.status == status, (path, resp.status, await resp.text())
            return await resp.json()

    async def put_json(self, path: str, body: dict[str, Any]) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.put(self.url + path, json=body) as resp,
        ):
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.json()

    async def log(self, job_id: str) -> list[dict[str, Any]]:
        """The job's raw events, `GET /api/jobs/{id}/log`."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/jobs/{job_id}/log") as resp,
        ):
            assert resp.status == 200, await resp.text()
            return [json.loads(line) for line in (await resp.text()).splitlines()]


# ---- the speech stand-in ---------------------------------------------------------------------


def tone_wav(seconds: float = 0.6, rate: int = 24_000) -> bytes:
    """A sine tone as 16-bit mono WAV, what `response_format: wav` answers."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(i / rate * 2 * math.pi * 440)))
                for i in range(int(seconds * rate))
            )
        )
    return buffer.getvalue()


class Speech:
    """`POST /v1/audio/speech`: records each request's Authorization and body, answers a tone."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.body = tone_wav()
        #: where it listens, `http://127.0.0.1:PORT/v1` (set once it is served)
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("Authorization", ""), await request.json()))
        return web.Response(body=self.body, content_type="audio/wav")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/audio/speech", self.handle)
        return app


#: the `make_server` fixture: `await make_server(**env)`
ServerFactory = Callable[..., Awaitable[AuraServer]]
