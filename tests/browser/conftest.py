"""Fixtures of the browser tests: a real `aura serve` process, a real headless Chromium
(Debian's, /usr/bin/chromium), and a local stand-in for the speech API.

Async Playwright only: the sync pytest-playwright plugin runs its own loop and breaks the
asyncio tests that follow it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from aura.tests.browser.server import AuraServer, ServerFactory, Speech, clean_env, free_port
from aura.tests.browser.ui import RECORDER_JS, PageFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """`await make_server(**env)`: a started `aura serve` on a free port over tmp_path/data,
    its environment free of AURA_* and OPENAI_* but for `env`. Stopped (SIGTERM) at the end."""
    servers: list[AuraServer] = []

    async def make(**env: str) -> AuraServer:
        n = len(servers)
        server = AuraServer(
            tmp_path / f"data{n or ''}",
            free_port(),
            clean_env(**env),
            tmp_path / f"serve{n or ''}.log",
        )
        servers.append(server)
        await server.start()
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> AuraServer:
    return await make_server()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[PageFactory]:
    """`await open_page(server, permissions=[...])`: a fresh context (recorder.js installed on
    every document) with the page at `/` loaded."""
    contexts: list[BrowserContext] = []

    async def open_(server: AuraServer, permissions: list[str] | None = None) -> Page:
        context = await browser.new_context(base_url=server.url)
        contexts.append(context)
        if permissions:
            await context.grant_permissions(permissions, origin=server.url)
        await context.add_init_script(script=RECORDER_JS)
        page = await context.new_page()
        page.set_default_timeout(30_000)
        await page.goto("/")
        return page

    yield open_
    for context in contexts:
        await context.close()


@pytest.fixture
async def speech(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Speech:
    """The stand-in speech endpoint on 127.0.0.1; `speech.base_url` is its `/v1`."""
    stand_in = Speech()
    served = await aiohttp_server(stand_in.app(), host="127.0.0.1")
    stand_in.base_url = f"http://127.0.0.1:{served.port}/v1"
    return stand_in
